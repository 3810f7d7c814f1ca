"""A portal session's runtime session at bitHuman (api/runtime-sessions.md).

- Linking: bitHuman lists every room of the account as a runtime session. A portal session is
  linked to its own (id and `room_name`) as soon as it shows up: a LiveKit session by its room
  name (ours), a hosted one by the embed token's `sid` appearing in the room name. Nothing less
  certain links (e.g. "the only new session of the agent"): a wrong link would send an
  operator's lines to, and End would terminate, a stranger's session. An unlinked session's
  lines go to every live room of the agent, and the console says so.
- Ending: a session that ends here (button, API, idle sweep, staff) terminates its runtime
  session and records bitHuman's answer; a failure is recorded and retried by a Celery task and
  the minute sweep until bitHuman answers (or MAX_END_ATTEMPTS).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from organizations import connections
from portal.bithuman import errors as bh_errors
from portal.bithuman.client import BithumanClient
from portal.bithuman.types import RuntimeSession
from portal.models import BithumanConnection, Organization
from sessions.models import (
    AgentSession,
    EventKind,
    EventOutcome,
    SessionEvent,
    SessionStatus,
)

logger = logging.getLogger(__name__)

LINK_RETRY_SECONDS = 5  # a page or a message asks bitHuman at most this often per session
AGENT_ROOMS_CACHE_SECONDS = 30
LIST_LIMIT = 200  # the most GET .../runtime-sessions returns
MAX_END_ATTEMPTS = 10
END_RETRY_SECONDS = 30
END_REASON = "ended in bitHuman Portal"


@dataclass(frozen=True)
class RoomState:
    """Where a line sent now goes: the session's own room, or every live room of the agent
    (`agent_live_rooms` of them, None when bitHuman could not say)."""

    linked: bool
    room_name: str = ""
    agent_live_rooms: int | None = None


def _agent_rooms_key(agent_id: int) -> str:
    return f"sessions:agent-live-rooms:{agent_id}"


def _client(connection: BithumanConnection) -> BithumanClient:
    # Pages and messages wait for these: one quick try; the beat and the task retry later.
    return connections.client_for(connection=connection, timeout=5, max_retries=0)


def _live_sessions(connection: BithumanConnection, client: BithumanClient) -> list[RuntimeSession]:
    user_id = connections.connection_user_id(connection=connection, client=client)
    page = client.runtime_session_list(user_id=user_id, window="live", limit=LIST_LIMIT)
    return [s for s in page.sessions if s.is_live]


def _match(session: AgentSession, candidates: list[RuntimeSession]) -> RuntimeSession | None:
    if not session.room_name:
        return None
    for candidate in candidates:
        if (
            candidate.agent_code == session.agent.code
            and candidate.room_name
            and session.room_name in candidate.room_name
        ):
            return candidate
    return None


def sessions_link(*, org: Organization, sessions: Iterable[AgentSession]) -> int:
    """Link these sessions of `org` to their runtime sessions (one list call); return how many
    were linked. Also notes each agent's live room count. Raises BithumanError."""
    pending = [s for s in sessions if not s.is_linked]
    for session in pending:  # another process may have linked it since it was read
        session.refresh_from_db(fields=["upstream_session_id", "upstream_room_name"])
    pending = [s for s in pending if not s.is_linked]
    if not pending:
        return 0
    connection = connections.connection_get(org=org)
    with _client(connection) as client:
        listed = _live_sessions(connection, client)
    taken = set(
        AgentSession.objects.for_org(org)
        .exclude(upstream_session_id="")
        .values_list("upstream_session_id", flat=True)
    )
    for agent_code in {s.agent.code for s in pending}:
        count = sum(1 for c in listed if c.agent_code == agent_code)
        agent_id = next(s.agent_id for s in pending if s.agent.code == agent_code)
        cache.set(_agent_rooms_key(agent_id), count, AGENT_ROOMS_CACHE_SECONDS)
    linked = 0
    for session in pending:
        found = _match(session, [c for c in listed if c.id not in taken])
        if found is None:
            continue
        now = timezone.now()
        fields = {
            "upstream_session_id": found.id,
            "upstream_room_name": found.room_name or "",
            "upstream_linked_at": now,
        }
        if AgentSession.objects.filter(pk=session.pk, upstream_session_id="").update(**fields):
            for name, value in fields.items():
                setattr(session, name, value)
            taken.add(found.id)
            linked += 1
            SessionEvent.objects.create(
                session=session,
                kind=EventKind.SYSTEM,
                text=f"Room connected: bitHuman lists it as {found.room_name or found.id}",
            )
    return linked


def room_state(session: AgentSession, *, sending: bool = False) -> RoomState:
    """Where a line goes now; asks bitHuman while the session is not linked: at most every
    LINK_RETRY_SECONDS for pages, before every line being sent (a line sent in the seconds after
    the room opened must not go to every room). Never raises: a failure leaves it unlinked."""
    throttle = f"sessions:link-try:{session.pk}"
    if not session.is_linked:  # the beat may have linked it since it was read
        session.refresh_from_db(fields=["upstream_session_id", "upstream_room_name"])
    if (
        not session.is_linked
        and session.is_live
        and (sending or cache.add(throttle, 1, LINK_RETRY_SECONDS))
    ):
        try:
            sessions_link(org=session.organization, sessions=[session])
        except bh_errors.BithumanError as error:
            logger.info("Session %s: runtime sessions not listed: %s", session.public_id, error)
    if session.is_linked:
        return RoomState(linked=True, room_name=session.upstream_room_name)
    return RoomState(linked=False, agent_live_rooms=cache.get(_agent_rooms_key(session.agent_id)))


def pending_sessions_link() -> int:
    """Beat: link every live, unlinked session, one list call per organization."""
    pending = (
        AgentSession.objects.live()
        .filter(upstream_session_id="")
        .select_related("agent", "organization")
        .order_by("organization_id", "started_at")
    )
    per_org: dict[int, list[AgentSession]] = {}
    for session in pending[:1000]:
        per_org.setdefault(session.organization_id, []).append(session)
    linked = 0
    for sessions in per_org.values():
        try:
            linked += sessions_link(org=sessions[0].organization, sessions=sessions)
        except bh_errors.BithumanError as error:
            logger.info(
                "Organization %s: runtime sessions not listed: %s",
                sessions[0].organization_id,
                error,
            )
    return linked


# --- Ending upstream ----------------------------------------------------------------------------


def _record(session: AgentSession, text: str, **outcome: object) -> None:
    SessionEvent.objects.create(session=session, kind=EventKind.SYSTEM, text=text, **outcome)


def upstream_end(session: AgentSession) -> bool:
    """Terminate the session's runtime session at bitHuman and record the answer. True when
    bitHuman confirmed it (or there is nothing left to end); False when it should be retried."""
    if session.upstream_ended_at is not None:
        return True
    if not session.is_linked:
        try:  # it may have shown up since the last look
            sessions_link(org=session.organization, sessions=[session])
        except bh_errors.BithumanError as error:
            return _end_failed(session, error)
        if not session.is_linked:
            _record(session, "bitHuman lists no live room for this session: nothing to end there")
            AgentSession.objects.filter(pk=session.pk).update(upstream_ended_at=timezone.now())
            return True
    connection = connections.connection_get(org=session.organization)
    if connection.is_live == session.sandbox:
        message = (
            "the organization switched between Test and Live since this session started; "
            "end the room in bitHuman's dashboard"
        )
        AgentSession.objects.filter(pk=session.pk).update(upstream_end_error=message)
        _record(
            session,
            "Could not end the room at bitHuman",
            outcome=EventOutcome.ERROR,
            error_message=message,
        )
        return True  # retrying cannot help
    try:
        with _client(connection) as client:
            user_id = connections.connection_user_id(connection=connection, client=client)
            answer = client.runtime_session_terminate(
                user_id=user_id, session_id=session.upstream_session_id, reason=END_REASON
            )
    except bh_errors.NotFoundError:
        note = "bitHuman no longer has this session: it had already ended"
    except bh_errors.BithumanError as error:
        return _end_failed(session, error)
    else:
        note = answer.note or "Session ended"
    now = timezone.now()
    AgentSession.objects.filter(pk=session.pk).update(
        upstream_ended_at=now, upstream_end_note=note, upstream_end_error=""
    )
    session.upstream_ended_at, session.upstream_end_note, session.upstream_end_error = now, note, ""
    _record(session, f"bitHuman ended the room {session.upstream_room_name}: {note}")
    return True


def _end_failed(session: AgentSession, error: bh_errors.BithumanError) -> bool:
    attempts = session.upstream_end_attempts + 1
    AgentSession.objects.filter(pk=session.pk).update(
        upstream_end_attempts=attempts, upstream_end_error=error.message
    )
    session.upstream_end_attempts, session.upstream_end_error = attempts, error.message
    retry = attempts < MAX_END_ATTEMPTS
    _record(
        session,
        "Could not end the room at bitHuman" + ("; retrying" if retry else "; gave up"),
        outcome=EventOutcome.ERROR,
        error_code=error.code,
        error_message=error.message,
    )
    logger.warning(
        "Session %s: terminate failed (%s), attempt %d", session.public_id, error, attempts
    )
    return not retry


def upstream_end_or_retry(session: AgentSession) -> None:
    """End it upstream now; on failure, a Celery task tries again in END_RETRY_SECONDS."""
    if not upstream_end(session):
        pk = session.pk
        transaction.on_commit(lambda: _retry_schedule(pk))


def _retry_schedule(session_pk: int) -> None:
    from sessions import tasks  # the task module imports this one

    tasks.session_upstream_end.apply_async(args=[session_pk], countdown=END_RETRY_SECONDS)


def upstream_end_retry(*, session_pk: int) -> bool:
    """The retry task: terminate again; True when done (bitHuman answered, or gave up)."""
    session = (
        AgentSession.objects.filter(pk=session_pk).select_related("agent", "organization").first()
    )
    if session is None or session.is_live:
        return True
    return upstream_end(session)


def upstream_ends_sweep() -> int:
    """Beat, every minute: retry the terminates that failed (this also covers a lost task)."""
    pending = (
        AgentSession.objects.exclude(status=SessionStatus.LIVE)
        .filter(upstream_ended_at__isnull=True, upstream_end_attempts__gt=0)
        .filter(upstream_end_attempts__lt=MAX_END_ATTEMPTS)
        .select_related("agent", "organization")
    )
    return sum(upstream_end(session) for session in pending[:200])
