"""A session and its events as the API and outbound webhooks show them (one shape for both)."""

from __future__ import annotations

from typing import Any

from sessions.models import AgentSession, SessionEvent


def session_out(session: AgentSession) -> dict[str, Any]:
    return {
        "id": str(session.public_id),
        "agent_id": str(session.agent.public_id),
        "kind": session.kind,
        "status": session.status,
        "room_name": session.room_name,
        "join_url": session.room_url,
        "started_at": session.started_at,
        "ended_at": session.ended_at,
        "runtime_session_id": session.upstream_session_id or None,
        "runtime_room_name": session.upstream_room_name or None,
        "runtime_ended_at": session.upstream_ended_at,
        "runtime_end_error": session.upstream_end_error or None,
    }


def event_out(event: SessionEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "kind": event.kind,
        "text": event.text,
        "outcome": event.outcome,
        "delivered_to_rooms": event.delivered_rooms,
        "rooms_skipped_no_worker": event.skipped_rooms,
        "room_id": event.room_id or None,
        "created_at": event.created_at,
    }
