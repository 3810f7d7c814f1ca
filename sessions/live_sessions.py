"""Every live and recent runtime session of the organization's bitHuman account
(api/runtime-sessions.md), including ones started outside the portal (the customer's website
embed, their own LiveKit worker): the list with the account's KPIs, Terminate per session, and
the owner's emergency "Revoke all runtime keys".

- The list is one `GET /v2/{user_id}/runtime-sessions` (window `all`), cached per account for
  LIVE_SESSIONS_CACHE_SECONDS and taken from the account's Read budget (agents.readbudget, shared
  with the agent poller). When the budget is spent or bitHuman fails, the last list is shown
  with its age rather than nothing.
- A row is matched to the organization's own agent (by code) and portal session (by the linked
  runtime session id) when there is one; other rows are shown as bitHuman names them.
- Terminating a session a live portal session is linked to ends that portal session (which
  terminates it upstream and records it in its timeline); any other is terminated directly.
  Both are audited. bitHuman answers 404 for a session not of this account: NotFound.
- Revoke all (owners only, typed confirmation): bitHuman disables every runtime key of the
  account; live sessions stop within about 5 minutes; keys are not deleted, and creating a new
  API key in bitHuman's dashboard restores runtime access.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from activity import services as activity_services
from activity.models import AuditAction
from agents import readbudget
from agents.models import Agent
from organizations import connections
from portal.bithuman import errors as bh_errors
from portal.bithuman.types import RevokeAll, RuntimeSession, RuntimeSessionPage
from portal.errors import (
    ApplicationError,
    NotFound,
    RateLimited,
    UpstreamFailed,
    upstream_failure,
)
from portal.models import BithumanConnection
from portal.tenancy import Actor, Role, role_require
from sessions import services
from sessions.models import AgentSession

logger = logging.getLogger(__name__)

LIST_LIMIT = 100
STALE_KEEP_SECONDS = 3600  # how long the last list can stand in when bitHuman cannot answer
# The runtime session ids bitHuman listed for the account lately: Terminate takes only these
# (and the organization's linked sessions), so an id never listed to this organization is
# "not found" without asking bitHuman, like every other organization's object.
SEEN_KEEP_SECONDS = 24 * 3600
SEEN_MAX = 2000


@dataclass(frozen=True)
class LiveSessionRow:
    runtime: RuntimeSession
    agent: Agent | None  # the organization's agent with this code, if any
    session: AgentSession | None  # the portal session linked to it, if any

    @property
    def started_outside(self) -> bool:
        return self.session is None


@dataclass(frozen=True)
class LiveSessions:
    active_count: int | None
    live_burn_rate: float | None
    credits_this_hour: float | None
    rows: list[LiveSessionRow]
    fetched_at: datetime | None
    # Set when this is an older list (bitHuman could not be asked now): why.
    stale_reason: str = ""


def _cache_key(connection: BithumanConnection) -> str:
    stamp = connection.updated_at.timestamp()
    return f"sessions:live-sessions:{connection.pk}:{connection.mode}:{stamp}"


def _fresh_seconds() -> int:
    return max(0, int(getattr(settings, "LIVE_SESSIONS_CACHE_SECONDS", 10)))


def _fetch(connection: BithumanConnection) -> RuntimeSessionPage:
    key = readbudget.account_of(connection)
    readbudget.read_require(key=key)
    try:
        with connections.client_for(connection=connection, timeout=5, max_retries=0) as client:
            user_id = connections.connection_user_id(connection=connection, client=client)
            return client.runtime_session_list(user_id=user_id, window="all", limit=LIST_LIMIT)
    except bh_errors.BithumanError as error:
        readbudget.rate_limited_record(key=key, error=error, default=5)
        connections.connection_outcome_record(connection=connection, error=error)
        raise upstream_failure(
            error, f"bitHuman did not list the account's sessions: {error.message}"
        ) from None


def _page(connection: BithumanConnection) -> tuple[RuntimeSessionPage, datetime, str]:
    """bitHuman's list, at most LIVE_SESSIONS_CACHE_SECONDS old; an older one (with the reason)
    when it cannot be asked now; the error when there is none."""
    cached = cache.get(_cache_key(connection))
    cached_at = parse_datetime(cached["fetched_at"]) if cached is not None else None
    if cached_at is not None and (timezone.now() - cached_at).total_seconds() < _fresh_seconds():
        return RuntimeSessionPage.model_validate(cached["page"]), cached_at, ""
    failed = cache.get(_cache_key(connection) + ":failed")
    try:
        if failed is not None and cached_at is None:
            # bitHuman failed moments ago: say so again rather than spend the Read budget
            # asking once per page view (the same answer for LIVE_SESSIONS_CACHE_SECONDS).
            raise UpstreamFailed(failed)
        page = _fetch(connection)
    except ApplicationError as error:
        if failed is None and not isinstance(error, RateLimited):
            cache.set(_cache_key(connection) + ":failed", error.message, _fresh_seconds())
        if cached_at is None:
            raise
        return RuntimeSessionPage.model_validate(cached["page"]), cached_at, error.message
    now = timezone.now()
    _seen_add(connection, page)
    cache.set(
        _cache_key(connection),
        {"fetched_at": now.isoformat(), "page": page.model_dump(mode="json")},
        STALE_KEEP_SECONDS,
    )
    return page, now, ""


def _forget(connection: BithumanConnection) -> None:
    cache.delete(_cache_key(connection))


def _seen_key(connection: BithumanConnection) -> str:
    return f"sessions:live-sessions-seen:{connection.pk}:{connection.mode}"


def _seen_add(connection: BithumanConnection, page: RuntimeSessionPage) -> None:
    seen = [s.id for s in page.sessions]
    known = [i for i in cache.get(_seen_key(connection), []) if i not in set(seen)]
    cache.set(_seen_key(connection), (seen + known)[:SEEN_MAX], SEEN_KEEP_SECONDS)


def live_sessions_get(*, actor: Actor) -> LiveSessions:
    """The account's sessions and KPIs, matched to the organization's agents and sessions.
    Admins and above. Raises RateLimited / UpstreamRefused / UpstreamFailed with no list."""
    role_require(actor, Role.ADMIN, "see the account's live sessions")
    org = actor.organization
    connection = connections.connection_get(org=org)
    page, fetched_at, stale_reason = _page(connection)
    codes = {s.agent_code for s in page.sessions if s.agent_code}
    agents = {a.code: a for a in Agent.objects.for_org(org).filter(code__in=codes)}
    linked = {
        s.upstream_session_id: s
        for s in AgentSession.objects.for_org(org)
        .filter(upstream_session_id__in=[s.id for s in page.sessions])
        .select_related("agent", "started_by")
    }
    rows = [
        LiveSessionRow(
            runtime=runtime,
            agent=agents.get(runtime.agent_code or ""),
            session=linked.get(runtime.id),
        )
        for runtime in page.sessions
    ]
    return LiveSessions(
        active_count=page.active_count,
        live_burn_rate=page.live_burn_rate_cr_per_min,
        credits_this_hour=page.credits_this_hour,
        rows=rows,
        fetched_at=fetched_at,
        stale_reason=stale_reason,
    )


def _runtime_id_check(runtime_session_id: str) -> str:
    value = runtime_session_id.strip()
    if not value or len(value) > 100 or any(c in value for c in "/?#") or not value.isprintable():
        raise NotFound("No such live session.")
    return value


def live_session_known_require(*, actor: Actor, runtime_session_id: str) -> str:
    """NotFound unless bitHuman listed this runtime session to the organization lately (or one
    of its sessions is linked to it): another organization's id, a made-up one and one never
    listed answer alike, without asking bitHuman. Returns the id, cleaned."""
    role_require(actor, Role.ADMIN, "terminate the account's live sessions")
    runtime_session_id = _runtime_id_check(runtime_session_id)
    org = actor.organization
    # Read only: an organization without a connection yet has been listed nothing.
    connection = BithumanConnection.objects.filter(organization=org).first()
    if connection is not None and runtime_session_id in cache.get(_seen_key(connection), []):
        return runtime_session_id
    if AgentSession.objects.for_org(org).filter(upstream_session_id=runtime_session_id).exists():
        return runtime_session_id
    raise NotFound("No such live session.")


def live_session_terminate(*, actor: Actor, runtime_session_id: str) -> str:
    """Stop one runtime session of the account; return bitHuman's note. Audited."""
    role_require(actor, Role.ADMIN, "terminate the account's live sessions")
    org = actor.organization
    runtime_session_id = _runtime_id_check(runtime_session_id)
    connection = connections.connection_get(org=org)
    linked = (
        AgentSession.objects.for_org(org)
        .live()
        .filter(upstream_session_id=runtime_session_id)
        .select_related("agent", "organization")
        .first()
    )
    if linked is None:
        live_session_known_require(actor=actor, runtime_session_id=runtime_session_id)
    if linked is not None:  # ends it here too, terminating it upstream (and in its timeline)
        services.session_end(actor=actor, session=linked)
        linked.refresh_from_db()
        note = linked.upstream_end_note or linked.upstream_end_error or "Session ended"
    else:
        try:
            with connections.client_for(connection=connection, timeout=10) as client:
                user_id = connections.connection_user_id(connection=connection, client=client)
                answer = client.runtime_session_terminate(
                    user_id=user_id,
                    session_id=runtime_session_id,
                    reason="terminated in bitHuman Portal's live sessions",
                )
        except bh_errors.NotFoundError:
            raise NotFound("No such live session.") from None
        except bh_errors.BithumanError as error:
            raise upstream_failure(
                error, f"bitHuman did not terminate the session: {error.message}"
            ) from None
        note = answer.note or "Session ended"
    _forget(connection)
    activity_services.audit_record(
        org=org,
        actor=actor,
        action=AuditAction.RUNTIME_SESSION_TERMINATED,
        target=linked,
        details={"runtime_session_id": runtime_session_id, "note": note[:300]},
    )
    return note


def revoke_all_phrase(*, actor: Actor) -> str:
    """What an owner types to confirm revoking every runtime key: the organization's slug."""
    return actor.organization.slug


def runtime_keys_revoke_all(*, actor: Actor, confirmation: str, reason: str = "") -> RevokeAll:
    """The emergency stop (owners only, typed confirmation). Audited."""
    role_require(actor, Role.OWNER, "revoke all runtime keys")
    org = actor.organization
    if confirmation.strip() != revoke_all_phrase(actor=actor):
        raise ApplicationError(
            f"Type {revoke_all_phrase(actor=actor)} to confirm.", field="confirmation"
        )
    connection = connections.connection_get(org=org)
    who = actor.user.email if actor.user_id else "an API key"
    text = reason.strip()[:300] or f"revoked in bitHuman Portal by {who}"
    try:
        with connections.client_for(connection=connection, timeout=10) as client:
            user_id = connections.connection_user_id(connection=connection, client=client)
            answer = client.runtime_revoke_all(user_id=user_id, reason=text)
    except bh_errors.BithumanError as error:
        raise upstream_failure(
            error, f"bitHuman did not revoke the runtime keys: {error.message}"
        ) from None
    _forget(connection)
    activity_services.audit_record(
        org=org,
        actor=actor,
        action=AuditAction.RUNTIME_KEYS_REVOKED,
        details={
            "reason": text,
            "mode": connection.mode,
            "effective_in_seconds": answer.effective_in_seconds,
            "note": answer.note or "",
        },
    )
    return answer
