"""Writes for live sessions: start, speak, add context, end, the idle sweep, quick replies, and
the organization's LiveKit settings.

- Starting asks bitHuman first and saves the session only when it answered: a refused start
  leaves nothing half-made.
- Speak and add-context record every attempt that reached bitHuman (or tried to) as an event
  with its outcome, delivered or not: nothing an operator typed is lost. Input that breaks the
  limits is refused before anything is sent or saved.
- A session's status only moves from live to ended, by compare-and-set: an operator and the
  idle sweep ending it at once end it once, and only the winner closes the LiveKit room.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import Agent
from organizations import connections
from portal import netsafe
from portal.bithuman import errors as bh_errors
from portal.errors import (
    ApplicationError,
    Conflict,
    NotFound,
    UpstreamFailed,
    upstream_failure,
)
from portal.models import BithumanConnection, User
from portal.tenancy import Actor, Role, organization_active_require, role_require
from sessions import events, fingerprints, livekit, selectors, transcripts, upstream
from sessions.models import (
    CONTEXT_MAX_CHARS,
    DEFAULT_LIVEKIT_AGENT_NAME,
    QUICK_REPLY_MAX_CHARS,
    RATE_LIMITED,
    SPEAK_MAX_CHARS,
    AgentSession,
    EndReason,
    EventKind,
    EventOutcome,
    LiveKitConfig,
    QuickReply,
    SessionEvent,
    SessionKind,
    SessionStatus,
)

logger = logging.getLogger(__name__)

# bitHuman's hosted embed page in Live mode; Test mode uses the sandbox's copy of it.
BITHUMAN_EMBED_BASE_URL = "https://bithuman.ai"
LIVEKIT_URL_SCHEMES = ("wss", "ws", "https", "http")
LIVEKIT_SECURE_SCHEMES = ("wss", "https")


def _actor_user(actor: Actor) -> User | None:
    """The person acting, or None when an API key acts (its membership has no user)."""
    return actor.user if actor.user_id else None


def _system_event(
    session: AgentSession, text: str, *, author: User | None = None, **outcome: Any
) -> SessionEvent:
    return SessionEvent.objects.create(
        session=session, kind=EventKind.SYSTEM, text=text, author=author, **outcome
    )


# --- Starting -----------------------------------------------------------------------------------


def _embed_link(*, connection: BithumanConnection, code: str, token: str) -> str:
    """bitHuman's hosted embed page for this token; the sandbox's copy in Test mode."""
    base = BITHUMAN_EMBED_BASE_URL if connection.is_live else settings.SANDBOX_BASE_URL
    return f"{base.rstrip('/')}/embed/{quote(code, safe='')}?{urlencode({'token': token})}"


def _livekit_room_name(agent: Agent) -> str:
    return f"bithuman-{agent.code.lower()}-{secrets.token_hex(4)}"


def _start_error(error: bh_errors.BithumanError, agent: Agent) -> ApplicationError:
    """bitHuman's refusal to start, in words; its kind follows bitHuman's status (a 4xx refusal,
    a 429 with its Retry-After, an outage)."""
    if isinstance(error, bh_errors.ConcurrencyLimitError):
        message = (
            "Your bitHuman plan's limit of concurrent live sessions is reached "
            f"({error.message}). End a live session, then start this one."
        )
    elif isinstance(error, bh_errors.ConflictError):
        message = f"bitHuman says {agent.name} is not ready for a session yet ({error.message})."
    elif isinstance(error, bh_errors.AgentNotFoundError):
        message = (
            f"bitHuman does not know agent {agent.code} under this organization's connection "
            "(was it made in the other mode, or deleted?)."
        )
    elif isinstance(error, bh_errors.RateLimitedError):
        wait = math.ceil(error.retry_after) if error.retry_after else None
        message = f"Slow down: retry in {wait} s." if wait else "Slow down: retry shortly."
    elif isinstance(error, bh_errors.InsufficientCreditsError):
        message = f"Not enough bitHuman credits to start a session ({error.message})."
    else:
        message = f"bitHuman could not start the session: {error.message}"
    return upstream_failure(error, message)


def _livekit_open(
    *, actor: Actor, agent: Agent, connection: BithumanConnection, public_id: uuid.UUID
) -> tuple[livekit.Project, str, str]:
    """Create the room in the organization's LiveKit project (the sandbox's in Test mode) and
    dispatch its worker into it (guides/deploy-livekit.md): (project, room name, viewer link).
    A failure closes the room it made and raises UpstreamFailed, so nothing is half-made."""
    user = _actor_user(actor)
    try:
        project = selectors.livekit_project(org=actor.organization, sandbox=not connection.is_live)
        if project is None:
            raise livekit.LiveKitError("LiveKit is not set up for this organization")
        if not project.sandbox:
            try:
                livekit_url_check(project.url)
            except ApplicationError:
                raise livekit.LiveKitError(
                    "the LiveKit URL in Settings is not a public address"
                ) from None
        room_name = _livekit_room_name(agent)
        # The job metadata the worker reads (examples/livekit_worker): which bitHuman agent.
        metadata = {"agent_code": agent.code, "agent_name": agent.name, "session": public_id.hex}
        livekit.room_create(project=project, room_name=room_name, metadata=metadata)
        try:
            livekit.agent_dispatch(project=project, room_name=room_name, metadata=metadata)
        except livekit.LiveKitError:
            try:
                livekit.project_room_delete(project=project, room_name=room_name)
            except livekit.LiveKitError as error:
                logger.warning("Room %s left open: %s", room_name, error.message)
            raise
    except livekit.LiveKitError as error:
        raise UpstreamFailed(
            f"Could not open the LiveKit room: {error.message}. Check the LiveKit settings.",
            code="livekit_failed",
        ) from None
    viewer = livekit.viewer_token(
        api_key=project.api_key,
        api_secret=project.api_secret,
        room_name=room_name,
        identity=f"operator-{public_id.hex[:12]}",
        name=user.get_short_name() if user else "Operator",
    )
    return project, room_name, project.link(viewer)


def session_start(*, actor: Actor, agent: Agent, kind: str) -> AgentSession:
    """Open a room for a ready agent and record the session.

    Hosted: an embed token (the operator's own stable fingerprint, sessions.fingerprints) and
    the embed page's link. LiveKit: a room in the organization's LiveKit project with its worker
    dispatched into it (the worker brings the avatar with livekit-plugins-bithuman), and a viewer
    link from LIVEKIT_ROOM_LINK_TEMPLATE.
    """
    role_require(actor, Role.MEMBER, "start sessions")
    organization_active_require(actor.organization)
    if agent.organization_id != actor.organization_id or agent.archived_at is not None:
        raise NotFound("No such agent.")
    if not agent.is_ready or not agent.code:
        raise Conflict(
            f"{agent.name} is not ready yet ({agent.get_status_display().lower()}): "
            "start a session once its generation has finished.",
            code="agent_not_ready",
        )
    if kind not in SessionKind.values:
        raise ApplicationError("Choose where the room runs.", field="kind")
    if kind == SessionKind.LIVEKIT and selectors.livekit_config_get(org=actor.organization) is None:
        raise Conflict(
            "LiveKit is not set up for this organization: an admin can add its URL, API key, "
            "API secret and agent name in Settings.",
            field="kind",
        )
    connection = connections.connection_get(org=actor.organization)
    public_id = uuid.uuid4()
    user = _actor_user(actor)
    livekit_url = ""
    if kind == SessionKind.LIVEKIT:
        project, room_name, room_url = _livekit_open(
            actor=actor, agent=agent, connection=connection, public_id=public_id
        )
        livekit_url = project.url
        started_text = (
            f"Session started: LiveKit room {room_name}, agent {project.agent_name} dispatched"
        )
    else:
        try:
            with connections.client_for(connection=connection) as client:
                embed = client.embed_token_request(
                    agent_id=agent.code, fingerprint=fingerprints.end_user_fingerprint(actor)
                )
        except bh_errors.BithumanError as error:
            raise _start_error(error, agent) from None
        if not embed.supported_models:
            # api/embedding.md: the models the agent can be launched as right now; none means
            # bitHuman cannot launch it yet (still generating there, or failed).
            raise Conflict(
                f"bitHuman says {agent.name} is not ready for a session yet (it can be "
                "launched as no model right now).",
                code="agent_not_ready",
            )
        room_name = embed.sid or ""
        room_url = _embed_link(connection=connection, code=agent.code, token=embed.token)
        started_text = "Session started: bitHuman hosted room"
    now = timezone.now()
    with transaction.atomic():
        session = AgentSession.objects.create(
            organization=actor.organization,
            public_id=public_id,
            agent=agent,
            kind=kind,
            room_name=room_name,
            room_url=room_url,
            sandbox=not connection.is_live,
            livekit_url=livekit_url,
            started_by=user,
            started_at=now,
            last_activity_at=now,
        )
        _system_event(session, started_text, author=user)
        events.session_started_record(actor=actor, session=session)
    return session


# --- Speak and add context ----------------------------------------------------------------------


def _message_check(*, kind: str, text: str) -> str:
    """The text to send, stripped; a form error for empty or over-limit text."""
    if kind == EventKind.SPEAK:
        field, limit, name, what = "message", SPEAK_MAX_CHARS, "Speak", "what the avatar says"
    else:
        field, limit, name, what = "context", CONTEXT_MAX_CHARS, "Context", "the context"
    text = text.strip()
    if not text:
        raise ApplicationError(f"Type {what} first.", field=field)
    if len(text) > limit:
        raise ApplicationError(
            f"{name} text is limited to {limit:,} characters (this has {len(text):,}).",
            field=field,
        )
    return text


def _outcome_of(error: bh_errors.BithumanError, code: str) -> dict[str, Any]:
    if isinstance(error, bh_errors.NoActiveRoomsError):
        return {"outcome": EventOutcome.NO_LIVE_ROOM, "error_message": error.message}
    outcome: dict[str, Any] = {"outcome": EventOutcome.ERROR, "error_code": error.code}
    if isinstance(error, bh_errors.RateLimitedError):
        retry_after = math.ceil(error.retry_after) if error.retry_after is not None else None
        outcome |= {
            "error_code": RATE_LIMITED,
            "retry_after_seconds": max(1, retry_after) if retry_after is not None else None,
            "error_message": error.message,
        }
    elif isinstance(error, bh_errors.AgentNotFoundError):
        outcome["error_message"] = (
            f"bitHuman does not know agent {code} under this organization's connection "
            f"({error.message})"
        )
    else:
        outcome["error_message"] = error.message
    return outcome


def _deliver(*, actor: Actor, session: AgentSession, kind: str, text: str) -> SessionEvent:
    action = "speak in sessions" if kind == EventKind.SPEAK else "add context to sessions"
    role_require(actor, Role.MEMBER, action)
    organization_active_require(actor.organization)
    text = _message_check(kind=kind, text=text)
    if session.organization_id != actor.organization_id:
        raise NotFound("No such session.")
    if not session.is_live:
        raise Conflict(
            "This session has ended: start a new one to reach the avatar.",
            field="message" if kind == EventKind.SPEAK else "context",
        )
    code = session.agent.code
    connection = connections.connection_get(org=actor.organization)
    # The session's own room once bitHuman lists it; until then every live room of the agent.
    # A LiveKit room's name is ours from the start: the avatar's session carries it.
    room_id = room_state(session=session, sending=True).room_name or None
    outcome: dict[str, Any]
    # The line is timed when it was sent: the avatar's lines in bitHuman's transcript follow it.
    sent_at = timezone.now()
    try:
        # No retries: a rate limit is shown at once ("retry in N s") rather than making the
        # operator wait, and the text stays in the box to send again.
        with connections.client_for(connection=connection, max_retries=0) as client:
            if kind == EventKind.SPEAK:
                delivery = client.agent_speak(code=code, message=text, room_id=room_id)
            else:
                delivery = client.agent_context_add(
                    code=code, context=text, context_type="add_context", room_id=room_id
                )
    except bh_errors.BithumanError as error:
        outcome = _outcome_of(error, code)
    else:
        outcome = {
            # api/agents.md: 0 rooms, or rooms skipped for want of a worker, reached no one.
            "outcome": EventOutcome.REACHED_NO_ONE
            if delivery.reached_no_one
            else EventOutcome.DELIVERED,
            "delivered_rooms": delivery.delivered_to_rooms,
            "skipped_rooms": delivery.rooms_skipped_no_worker,
        }
    now = timezone.now()
    with transaction.atomic():
        event = SessionEvent.objects.create(
            session=session,
            kind=kind,
            text=text,
            author=_actor_user(actor),
            created_at=sent_at,
            room_id=room_id or "",
            **outcome,
        )
        AgentSession.objects.filter(pk=session.pk).update(last_activity_at=now)
        events.session_message_record(actor=actor, session=session, event=event)
    session.last_activity_at = now
    return event


def room_state(*, session: AgentSession, sending: bool = False) -> upstream.RoomState:
    """Where a line sent now goes: the session's own room, or every live room of the agent.
    A LiveKit session's room is the one we created: bitHuman lists the avatar's session under
    that name, so lines go there from the start (while linking still runs, for End)."""
    state = upstream.room_state(session, sending=sending)
    if session.kind == SessionKind.LIVEKIT and session.room_name:
        return upstream.RoomState(linked=True, room_name=session.room_name)
    return state


def session_speak(*, actor: Actor, session: AgentSession, text: str) -> SessionEvent:
    """Make the avatar say `text` now in the agent's live rooms; the event says what happened."""
    return _deliver(actor=actor, session=session, kind=EventKind.SPEAK, text=text)


def session_context_add(*, actor: Actor, session: AgentSession, text: str) -> SessionEvent:
    """Give the agent background knowledge for its next replies (bitHuman's `add_context`)."""
    return _deliver(actor=actor, session=session, kind=EventKind.CONTEXT, text=text)


# --- Ending -------------------------------------------------------------------------------------


def _livekit_room_close(session: AgentSession) -> None:
    """Close the LiveKit room we created (DeleteRoom); a failure is recorded, never raised."""
    try:
        project = selectors.livekit_project(org=session.organization, sandbox=session.sandbox)
        if project is None or project.url != session.livekit_url:
            raise livekit.LiveKitError(
                "the organization's LiveKit settings changed since the session started; "
                f"close room {session.room_name} in LiveKit yourself"
            )
        if not project.sandbox:
            try:  # checked again at use: the name may resolve elsewhere by now
                livekit_url_check(project.url)
            except ApplicationError:
                raise livekit.LiveKitError(
                    f"LiveKit did not close room {session.room_name}: the LiveKit URL is not "
                    "a public address"
                ) from None
        try:
            livekit.project_room_delete(project=project, room_name=session.room_name)
            closed = True
        except livekit.LiveKitError as error:
            if "(not_found)" not in error.message:
                raise
            closed = False  # the room had already closed (empty timeout, or by hand)
    except livekit.LiveKitError as error:
        logger.warning("Session %s: %s", session.public_id, error.message)
        _system_event(
            session,
            "Could not close the LiveKit room",
            outcome=EventOutcome.ERROR,
            error_message=error.message,
        )
        return
    state = "closed" if closed else "had already closed"
    _system_event(session, f"LiveKit room {session.room_name} {state}")


def _end(
    *,
    session: AgentSession,
    reason: str,
    user: User | None,
    idle_before: datetime | None = None,
    actor: Actor | None = None,
    staff: bool = False,
) -> bool:
    now = timezone.now()
    live = AgentSession.objects.filter(pk=session.pk, status=SessionStatus.LIVE)
    if idle_before is not None:
        # Activity since the sweep picked this session keeps it live.
        live = live.filter(last_activity_at__lt=idle_before)
    ended = live.update(status=SessionStatus.ENDED, ended_at=now, ended_by=user, end_reason=reason)
    session.refresh_from_db()
    if not ended:
        return False
    if reason == EndReason.IDLE:
        text = f"Session ended: idle for more than {settings.SESSION_IDLE_MINUTES} minutes"
    elif reason == EndReason.STAFF:
        text = "Session ended by bitHuman Portal staff"
    else:
        text = f"Session ended by {user.get_short_name()}" if user else "Session ended"
    _system_event(session, text, author=user)
    events.session_ended_record(actor=user if staff else actor, session=session, staff=staff)
    # The hosted room keeps running (and billing) in any tab with the join link until bitHuman
    # terminates it; a failure is recorded and retried by a task, not forgotten.
    upstream.upstream_end_or_retry(session)
    transcripts.final_pull_schedule(session)  # the visitor and avatar lines, complete
    if session.kind == SessionKind.LIVEKIT:
        _livekit_room_close(session)
    return True


def session_end(*, actor: Actor, session: AgentSession) -> bool:
    """End a live session (an operator's "End session"); False if it had already ended."""
    role_require(actor, Role.MEMBER, "end sessions")
    if session.organization_id != actor.organization_id:
        raise NotFound("No such session.")
    return _end(session=session, reason=EndReason.OPERATOR, user=_actor_user(actor), actor=actor)


def session_end_by_staff(*, session: AgentSession, user: User) -> bool:
    """Django admin's "End session": ended and audited as a staff action."""
    return _end(session=session, reason=EndReason.STAFF, user=user, staff=True)


def sessions_end_idle(*, now: datetime | None = None, batch: int = 500) -> int:
    """End live sessions idle longer than SESSION_IDLE_MINUTES; return how many ended."""
    cutoff = (now or timezone.now()) - timedelta(minutes=settings.SESSION_IDLE_MINUTES)
    ended = 0
    idle = AgentSession.objects.idle_since(cutoff).select_related("organization", "agent")
    for session in idle.order_by("last_activity_at")[:batch]:
        ended += _end(session=session, reason=EndReason.IDLE, user=None, idle_before=cutoff)
    return ended


# --- Quick replies ------------------------------------------------------------------------------


def quick_reply_create(*, actor: Actor, text: str) -> QuickReply:
    """Save a line for the Speak box; saving the same line twice keeps one."""
    role_require(actor, Role.MEMBER, "save quick replies")
    text = text.strip()
    if not text:
        raise ApplicationError("Type the quick reply first.", field="reply")
    if len(text) > QUICK_REPLY_MAX_CHARS:
        raise ApplicationError(
            f"A quick reply is limited to {QUICK_REPLY_MAX_CHARS} characters.", field="reply"
        )
    org = actor.organization
    try:
        with transaction.atomic():
            reply, _created = QuickReply.objects.get_or_create(
                organization=org, text=text, defaults={"created_by": _actor_user(actor)}
            )
    except IntegrityError:  # saved by someone else at the same moment
        reply = QuickReply.objects.for_org(org).get(text=text)
    return reply


def quick_reply_delete(*, actor: Actor, reply: QuickReply) -> None:
    role_require(actor, Role.MEMBER, "delete quick replies")
    QuickReply.objects.for_org(actor.organization).filter(pk=reply.pk).delete()


# --- The organization's LiveKit project ---------------------------------------------------------


def _livekit_url_clean(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in LIVEKIT_URL_SCHEMES or not parts.netloc:
        raise ApplicationError(
            "Give the LiveKit server URL, e.g. wss://your-project.livekit.cloud.", field="url"
        )
    livekit_url_check(url)
    return url


def livekit_url_check(url: str) -> None:
    """The webhook URLs' address rules (portal.netsafe.public_url_check): wss:// or
    https://, a public host; ws:// and local servers only with WEBHOOK_ALLOW_LOCAL."""
    netsafe.public_url_check(
        url,
        schemes=LIVEKIT_SECURE_SCHEMES,
        local_schemes=LIVEKIT_URL_SCHEMES,
        purpose="the LiveKit server must be on the public internet",
    )


LIVEKIT_AGENT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def livekit_config_save(
    *,
    actor: Actor,
    url: str,
    api_key: str,
    api_secret: str,
    agent_name: str = DEFAULT_LIVEKIT_AGENT_NAME,
) -> LiveKitConfig:
    """Save the LiveKit project (secret encrypted) and the dispatch name of its worker. A
    blank secret keeps the saved one."""
    role_require(actor, Role.ADMIN, "change the LiveKit settings")
    url = _livekit_url_clean(url)
    api_key = api_key.strip()
    api_secret = api_secret.strip()
    agent_name = agent_name.strip() or DEFAULT_LIVEKIT_AGENT_NAME
    if not api_key:
        raise ApplicationError("Paste the LiveKit API key.", field="api_key")
    if not LIVEKIT_AGENT_NAME_RE.fullmatch(agent_name):
        raise ApplicationError(
            "Give the agent name your LiveKit worker registers with (letters, digits, '-', "
            "'_' and '.', up to 128), e.g. bithuman-avatar.",
            field="agent_name",
        )
    existing = selectors.livekit_config_get(org=actor.organization)
    if not api_secret:
        if existing is None:
            raise ApplicationError("Paste the LiveKit API secret.", field="api_secret")
        api_secret = existing.api_secret
    config, _created = LiveKitConfig.objects.update_or_create(
        organization=actor.organization,
        defaults={
            "url": url,
            "api_key": api_key,
            "api_secret": api_secret,
            "agent_name": agent_name,
            "updated_by": _actor_user(actor),
        },
    )
    return config


def livekit_config_delete(*, actor: Actor) -> None:
    role_require(actor, Role.ADMIN, "change the LiveKit settings")
    LiveKitConfig.objects.filter(organization=actor.organization).delete()
