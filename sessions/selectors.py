"""Reads for live sessions: lists, the timeline, room links, exports, quick replies."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db.models import Count, Q, QuerySet

from agents.models import Agent
from organizations import connections
from portal.models import Organization, User
from portal.tenancy import tenant_get
from sessions import livekit
from sessions.models import (
    AgentSession,
    EventKind,
    LiveKitConfig,
    QuickReply,
    SessionEvent,
    SessionKind,
    SessionStatus,
)

# The console shows the latest events; the exports have them all.
TIMELINE_LIMIT = 200
MESSAGE_KINDS = (EventKind.SPEAK, EventKind.CONTEXT)


def session_get(*, org: Organization, public_id: str | UUID) -> AgentSession:
    """The organization's session with this id (its agent and people joined in), or NotFound."""
    sessions = AgentSession.objects.for_org(org).select_related(
        "agent", "organization", "started_by", "ended_by"
    )
    return tenant_get(sessions, public_id)


def quick_reply_get(*, org: Organization, public_id: str | UUID) -> QuickReply:
    return tenant_get(QuickReply.objects.for_org(org), public_id)


def session_list(
    *, org: Organization, agent: Agent | None = None, status: str = ""
) -> QuerySet[AgentSession]:
    """Sessions, newest first, with `message_count` (speak and context attempts)."""
    sessions = (
        AgentSession.objects.for_org(org)
        .select_related("agent", "started_by")
        .annotate(message_count=Count("events", filter=Q(events__kind__in=MESSAGE_KINDS)))
        .order_by("-started_at", "-id")
    )
    if agent is not None:
        sessions = sessions.filter(agent=agent)
    if status in SessionStatus.values:
        sessions = sessions.filter(status=status)
    return sessions


def live_session_count(*, org: Organization) -> int:
    return AgentSession.objects.for_org(org).live().count()


def timeline(*, session: AgentSession, limit: int | None = TIMELINE_LIMIT) -> list[SessionEvent]:
    """The session's events in order (the latest `limit` of them)."""
    events = SessionEvent.objects.filter(session=session).select_related("author")
    if limit is None:
        return list(events.order_by("created_at", "id"))
    latest = list(events.order_by("-created_at", "-id")[:limit])
    latest.reverse()
    return latest


def livekit_config_get(*, org: Organization) -> LiveKitConfig | None:
    return LiveKitConfig.objects.filter(organization=org).first()


def livekit_project(*, org: Organization, sandbox: bool) -> livekit.Project | None:
    """The LiveKit project a session of `org` runs in: the one in its settings, or in Test mode
    (`sandbox`) the sandbox's stand-in, with the settings' agent name. None without settings;
    LiveKitError when the sandbox does not answer."""
    config = livekit_config_get(org=org)
    if config is None:
        return None
    if sandbox:
        connection = connections.connection_get(org=org)
        return livekit.sandbox_project(
            sandbox_secret=connection.sandbox_secret, agent_name=config.agent_name
        )
    return livekit.Project(
        url=config.url,
        api_key=config.api_key,
        api_secret=config.api_secret,
        agent_name=config.agent_name,
    )


def quick_reply_list(*, org: Organization) -> QuerySet[QuickReply]:
    return QuickReply.objects.for_org(org).order_by("text")


@dataclass(frozen=True)
class RoomLinks:
    frame: str  # what the console's iframe opens
    join: str  # "Open in a new tab" / "Copy join link"


def room_links(*, session: AgentSession, user: User, can_talk: bool) -> RoomLinks:
    """Links to the session's room. A hosted room is one embed link that anyone may open. In
    LiveKit one identity is one participant, so each link gets a fresh viewer token (while the
    organization's LiveKit settings are the ones the room was made with); a portal viewer's
    token only watches and listens (`can_talk` False)."""
    if session.kind != SessionKind.LIVEKIT:
        return RoomLinks(frame=session.room_url, join=session.room_url)
    try:
        project = livekit_project(org=session.organization, sandbox=session.sandbox)
    except livekit.LiveKitError:
        project = None
    if project is None or project.url != session.livekit_url:
        return RoomLinks(frame=session.room_url, join=session.room_url)

    def link(identity: str, name: str) -> str:
        token = livekit.viewer_token(
            api_key=project.api_key,
            api_secret=project.api_secret,
            room_name=session.room_name,
            identity=f"{identity}-{secrets.token_hex(4)}",
            name=name,
            can_publish=can_talk,
        )
        return project.link(token)

    role = "operator" if can_talk else "watcher"
    return RoomLinks(
        frame=link(f"{role}-{user.pk}", user.get_short_name()),
        join=link("guest" if can_talk else "watcher", "Guest"),
    )


def _export_row(event: SessionEvent) -> dict[str, Any]:
    return {
        "time": event.created_at.isoformat(),
        "kind": event.kind,
        "author": event.author.email if event.author else "",
        "text": event.text,
        "outcome": event.outcome,
        "outcome_label": event.outcome_label,
        "delivered_rooms": event.delivered_rooms,
        "skipped_rooms": event.skipped_rooms,
        "room_id": event.room_id,
        "error_code": event.error_code,
        "error_message": event.error_message,
        "retry_after_seconds": event.retry_after_seconds,
    }


EXPORT_COLUMNS = [
    "time",
    "kind",
    "author",
    "text",
    "outcome",
    "outcome_label",
    "delivered_rooms",
    "skipped_rooms",
    "room_id",
    "error_code",
    "error_message",
    "retry_after_seconds",
]


def timeline_export(*, session: AgentSession) -> dict[str, Any]:
    """The whole timeline and what the session was, for the CSV and JSON exports."""
    return {
        "session": {
            "id": str(session.public_id),
            "agent": session.agent.name,
            "agent_code": session.agent.code,
            "kind": session.kind,
            "room_name": session.room_name,
            "status": session.status,
            "started_by": session.started_by.email if session.started_by else "",
            "started_at": session.started_at.isoformat(),
            "ended_at": session.ended_at.isoformat() if session.ended_at else None,
            "end_reason": session.end_reason,
        },
        "events": [_export_row(event) for event in timeline(session=session, limit=None)],
    }
