"""Sessions over REST: start, list, end, speak, add context, read events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, JsonResponse
from ninja import Query, Router, Schema
from pydantic import Field

from agents import selectors as agent_selectors
from portal.apisupport import (
    MAX_OFFSET,
    ApiError,
    ListQuery,
    Text,
    actor_for,
    page_bounds,
    rate_limited,
    scope_require,
)
from portal.models import ApiScope
from portal.tenancy import public_id_parse
from sessions import selectors, services, transcripts
from sessions.models import AgentSession, EventOutcome, SessionEvent
from sessions.payloads import event_out, session_out

router = Router(tags=["sessions"])


class SessionStartIn(Schema):
    kind: str = Field(
        default="hosted",
        pattern="^(hosted|livekit)$",
        description="hosted: bitHuman's hosted room; livekit: your own LiveKit (see Settings).",
    )


class SessionOut(Schema):
    id: str = Field(description="The session's id (a UUID).")
    agent_id: str = Field(description="Id of the agent in this session.")
    kind: str = Field(description="hosted or livekit.")
    status: str = Field(description="live or ended.")
    room_name: str = Field(description="Name of the room the avatar joined.")
    join_url: str = Field(description="Link to join the room and see the avatar.")
    started_at: Any = Field(description="When the session started.")
    ended_at: Any | None = Field(description="When the session ended; null while live.")
    runtime_session_id: str | None = Field(
        default=None,
        description="bitHuman's runtime session for this room; null until bitHuman lists it "
        "(until then speak and context go to every live room of the agent).",
    )
    runtime_room_name: str | None = Field(
        default=None, description="The room bitHuman lists (speak and context target it)."
    )
    runtime_ended_at: Any | None = Field(
        default=None, description="When bitHuman confirmed the runtime session ended."
    )
    runtime_end_error: str | None = Field(
        default=None,
        description="Why ending it at bitHuman failed so far (retried); null when it did not.",
    )


class SessionList(Schema):
    items: list[SessionOut] = Field(description="This page of sessions.")
    count: int = Field(description="How many sessions match, over all pages.")


class SessionListQuery(Schema):
    agent_id: str | None = Field(default=None, description="Only sessions of this agent (its id).")
    status: str | None = Field(
        default=None, pattern="^(live|ended)$", description="Only live or only ended sessions."
    )
    limit: int = Field(default=20, ge=1, le=100, description="Page size, 1 to 100.")
    offset: int = Field(
        default=0, ge=0, le=MAX_OFFSET, description="How many matching sessions to skip."
    )


class SpeakIn(Schema):
    message: Text = Field(
        min_length=1,
        max_length=2000,
        description="What the avatar says now, word for word (1-2,000 characters).",
    )


class ContextIn(Schema):
    context: Text = Field(
        min_length=1,
        max_length=10000,
        description="Background for the agent's next replies, not spoken (1-10,000 characters).",
    )


class EventOut(Schema):
    id: int = Field(description="The event's number.")
    kind: str = Field(
        description="speak, context or system (the portal's), or visitor / avatar: a line of "
        "bitHuman's transcript of the room, at bitHuman's time."
    )
    text: str = Field(description="What was sent or what happened.")
    outcome: str = Field(
        description="Empty for system events and transcript lines; else delivered, "
        "reached_no_one (bitHuman answered 0 rooms, or rooms without an avatar worker), "
        "no_live_room or error."
    )
    delivered_to_rooms: int | None = Field(
        description="How many rooms received it; null when nothing was sent."
    )
    rooms_skipped_no_worker: int | None = Field(
        default=None, description="Rooms bitHuman skipped for want of an avatar worker."
    )
    room_id: str | None = Field(
        default=None,
        description="The session's room it was sent to; null: every live room of the agent.",
    )
    created_at: Any = Field(description="When it happened.")


class EventList(Schema):
    items: list[EventOut] = Field(description="This page of the timeline.")
    count: int = Field(description="How many events, over all pages.")


def _session_get(request: HttpRequest, session_id: str) -> AgentSession:
    """The key's organization's session, or NotFound (404) for a foreign, unknown or bad id."""
    return selectors.session_get(org=request.organization, public_id=session_id)  # type: ignore[attr-defined]


# Mounted under /agents by the interfaces' NinjaAPI: a session starts from its agent.
agent_router = Router(tags=["agents"])


@agent_router.post(
    "/{agent_id}/sessions",
    response={201: SessionOut},
    summary="Start a live session (hosted embed room, or the organization's LiveKit)",
)
def session_start(request: HttpRequest, agent_id: str, payload: SessionStartIn) -> JsonResponse:
    actor = actor_for(scope_require(request, ApiScope.SESSIONS_WRITE))
    agent = agent_selectors.agent_get(org=request.organization, public_id=agent_id)  # type: ignore[attr-defined]
    session = services.session_start(actor=actor, agent=agent, kind=payload.kind)
    return JsonResponse(SessionOut(**session_out(session)).model_dump(mode="json"), status=201)


@router.get("", response=SessionList, summary="List sessions")
def session_list(request: HttpRequest, filters: Query[SessionListQuery]) -> dict[str, Any]:
    scope_require(request, ApiScope.SESSIONS_READ)
    start, end = page_bounds(ListQuery(limit=filters.limit, offset=filters.offset))
    sessions = AgentSession.objects.for_org(request.organization).select_related("agent")  # type: ignore[attr-defined]
    if filters.agent_id:
        # A filter, not a lookup: an unknown or foreign agent lists nothing.
        sessions = sessions.filter(agent__public_id=public_id_parse(filters.agent_id))
    if filters.status:
        sessions = sessions.filter(status=filters.status)
    return {
        "items": [session_out(s) for s in sessions[start:end]],
        "count": sessions.count(),
    }


@router.get("/{session_id}", response=SessionOut, summary="A session")
def session_get(request: HttpRequest, session_id: str) -> dict[str, Any]:
    scope_require(request, ApiScope.SESSIONS_READ)
    return session_out(_session_get(request, session_id))


@router.post("/{session_id}/end", response=SessionOut, summary="End a session")
def session_end(request: HttpRequest, session_id: str) -> dict[str, Any]:
    actor = actor_for(scope_require(request, ApiScope.SESSIONS_WRITE))
    session = _session_get(request, session_id)
    services.session_end(actor=actor, session=session)
    session.refresh_from_db()
    return session_out(session)


def _delivered(event: SessionEvent) -> JsonResponse:
    body = EventOut(**event_out(event)).model_dump(mode="json")
    if event.outcome == EventOutcome.DELIVERED:
        return JsonResponse(body, status=201)
    if event.outcome == EventOutcome.REACHED_NO_ONE:
        raise ApiError(
            409,
            "reached_no_one",
            f"{event.outcome_label}. The event was recorded.",
            details={"event_id": event.pk},
        )
    if event.outcome == EventOutcome.NO_LIVE_ROOM:
        raise ApiError(
            409,
            "no_live_room",
            "No live room: open the session's join_url first. The event was recorded.",
            details={"event_id": event.pk},
        )
    if event.retry_after_seconds:
        limited = rate_limited(event.retry_after_seconds)
        limited.details["event_id"] = event.pk
        raise limited
    raise ApiError(
        502,
        "upstream_error",
        f"bitHuman: {event.error_message}",
        details={"event_id": event.pk, "code": event.error_code},
    )


def _message_send(
    request: HttpRequest,
    session_id: str,
    send: Callable[..., SessionEvent],
    text: str,
) -> JsonResponse:
    """Speak or add context through the same service as the console; the event is recorded
    whatever the outcome, and the outcome decides the answer."""
    actor = actor_for(scope_require(request, ApiScope.SESSIONS_WRITE))
    session = _session_get(request, session_id)
    return _delivered(send(actor=actor, session=session, text=text))


@router.post(
    "/{session_id}/speak",
    response={201: EventOut},
    summary="Make the avatar say something now",
)
def session_speak(request: HttpRequest, session_id: str, payload: SpeakIn) -> JsonResponse:
    return _message_send(request, session_id, services.session_speak, payload.message)


@router.post(
    "/{session_id}/context",
    response={201: EventOut},
    summary="Give the avatar knowledge for its next replies",
)
def session_context(request: HttpRequest, session_id: str, payload: ContextIn) -> JsonResponse:
    return _message_send(request, session_id, services.session_context_add, payload.context)


@router.get("/{session_id}/events", response=EventList, summary="The session's timeline")
def session_events(
    request: HttpRequest, session_id: str, paging: Query[ListQuery]
) -> dict[str, Any]:
    scope_require(request, ApiScope.SESSIONS_READ)
    session = _session_get(request, session_id)
    transcripts.transcript_pull_throttled(session)  # visitor and avatar lines
    start, end = page_bounds(paging)
    events = session.events.order_by("created_at", "id")
    return {"items": [event_out(e) for e in events[start:end]], "count": events.count()}
