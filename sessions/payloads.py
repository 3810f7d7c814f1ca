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
    }


def event_out(event: SessionEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "kind": event.kind,
        "text": event.text,
        "outcome": event.outcome,
        "delivered_to_rooms": event.delivered_rooms,
        "created_at": event.created_at,
    }
