"""Writes for agents: the generate outbox, status changes, prompt revisions, deletion.

- Generate is an outbox: the row is committed first (`submitting`), then a task calls bitHuman
  with the agent's own public id as `Idempotency-Key`. Any number of re-sends (task retries, the
  sweeper after a killed worker) replay the first answer upstream, so one row never makes two
  upstream agents.
- Status writes are compare-and-set: a terminal agent never changes, and an intermediate answer
  only applies when its progress is not behind what we already have (answers can arrive out of
  order from the poller and webhooks). The poller writes a whole batch with the same rules in
  one statement (`agent_statuses_apply`, `agent_leases_release`): `WITH v AS (VALUES ...)
  UPDATE ... FROM v`, on PostgreSQL and SQLite alike, per row on any other database.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, DateTimeField, F, Field, Q, Value, When
from django.db.models.fields.files import FieldFile
from django.utils import timezone

from activity import services as activity_services
from agents import events
from agents.models import (
    TERMINAL_STATUSES,
    Agent,
    AgentStatus,
    AgentStatusChange,
    PromptRevision,
    StatusSource,
)
from agents.preflight import MediaSource
from organizations import services as portal_services
from portal.bithuman import errors as bh_errors
from portal.bithuman import types as bh
from portal.errors import ApplicationError, Conflict, upstream_failure
from portal.models import Membership, Organization, User
from portal.tenancy import Role, organization_active_require, role_require
from portal.text import one_line_require

logger = logging.getLogger(__name__)

# Typical upstream durations (seconds) per model, from bitHuman's documentation: used for the
# ETA, the polling cadence, and (times AGENT_DEADLINE_FACTOR) the deadline that fails an agent.
TYPICAL_SECONDS = {
    "expression-1": 120,
    "essence-1": 300,
    "essence-2": 40 * 60,
    "expression-2": 90 * 60,
}


def _actor_user(actor: Membership) -> User | None:
    """The person acting, or None when an API key acts (its actor has no user)."""
    return actor.user if actor.user_id else None


@transaction.atomic
def agent_create(
    *,
    actor: Membership,
    name: str,
    system_prompt: str,
    model: str,
    aspect_ratio: str,
    framing: str,
    transparency: bool,
    image: MediaSource,
    audio: MediaSource,
    public_id: uuid.UUID | None = None,
) -> Agent:
    """Record the agent and queue its submission (after commit). Pre-flight ran before this.

    `public_id` comes from the form: submitting the same form twice finds the first agent
    instead of paying for a second one.
    """
    role_require(actor, Role.MEMBER, "create agents")
    organization_active_require(actor.organization)
    if not name.strip():
        raise ApplicationError("Give the agent a name.", field="name")
    one_line_require(name, field="name")
    if public_id is not None:
        existing = Agent.objects.for_org(actor.organization).filter(public_id=public_id).first()
        if existing is not None:
            return existing
    agent = Agent(
        public_id=public_id or uuid.uuid4(),
        organization=actor.organization,
        name=name.strip(),
        system_prompt=system_prompt.strip(),
        model=model,
        aspect_ratio=aspect_ratio,
        framing=framing,
        transparency=transparency,
        image_url=image.url if not image.upload else "",
        audio_url=audio.url if not audio.upload else "",
        created_by=_actor_user(actor),
    )
    if image.upload:
        agent.image.save(image.upload.name or "image", image.upload, save=False)
    if audio.upload:
        agent.audio.save(audio.upload.name or "audio", audio.upload, save=False)
    try:
        with transaction.atomic():
            agent.save()
    except IntegrityError:  # the same form, submitted twice at the same moment
        duplicate = Agent.objects.for_org(actor.organization).filter(public_id=agent.public_id)
        if duplicate.exists():
            return duplicate.get()
        raise Conflict("This form was already used. Reload the page and try again.") from None
    _history(agent, from_status="", source=StatusSource.SUBMIT)
    _submit_enqueue(agent)
    activity_services.audit_record(
        org=actor.organization,
        actor=actor,
        action="agent.created",
        target=agent,
        details={"model": agent.model},
    )
    return agent


def _submit_enqueue(agent: Agent) -> None:
    from agents import tasks

    agent_pk = agent.pk
    # robust: a broker outage must not fail the request; the row is committed `submitting` and
    # the sweeper re-sends it with the same Idempotency-Key.
    transaction.on_commit(lambda: tasks.agent_submit.delay(agent_pk), robust=True)


def _history(agent: Agent, *, from_status: str, source: str) -> None:
    _history_row(agent, from_status=from_status, source=source).save()


def _history_row(agent: Agent, *, from_status: str, source: str) -> AgentStatusChange:
    return AgentStatusChange(
        agent=agent,
        from_status=from_status,
        to_status=agent.status,
        progress=agent.progress,
        current_step=agent.current_step,
        message=(agent.error_message or agent.progress_message)[:300],
        source=source,
    )


def _media_value(file_field: FieldFile, url: str) -> str | None:
    """bitHuman takes a public URL or the file's bytes in base64."""
    if url:
        return url
    if not file_field:
        return None
    file_field.open("rb")
    try:
        return base64.b64encode(file_field.read()).decode()
    finally:
        file_field.close()


# Refusals that no retry will fix: the agent fails with bitHuman's reason.
_REFUSALS = (
    bh_errors.ValidationError,
    bh_errors.InsufficientCreditsError,
    bh_errors.AuthenticationError,
    bh_errors.PermissionDeniedError,
    bh_errors.ConcurrencyLimitError,
    bh_errors.ConflictError,
    bh_errors.MalformedResponseError,
)


def _refusal_message(error: bh_errors.BithumanError) -> str:
    if isinstance(error, bh_errors.InsufficientCreditsError):
        return (
            "Not enough bitHuman credits for this model. Top up your bitHuman account "
            "(or choose a cheaper model) and retry."
        )
    if isinstance(error, bh_errors.AuthenticationError):
        return "bitHuman rejected the organization's API secret. An admin can fix it in Settings."
    return f"bitHuman refused the request: {error.message}"


def agent_submit(*, agent_pk: int) -> Agent | None:
    """Send the generate request for an agent still `submitting` (safe to repeat).

    Transient errors (429, 5xx, network) are raised for the task to retry; refusals fail the agent.
    """
    agent = Agent.objects.select_related("organization").filter(pk=agent_pk).first()
    if agent is None or agent.status != AgentStatus.SUBMITTING:
        return agent
    Agent.objects.filter(pk=agent.pk).update(submit_attempts=agent.submit_attempts + 1)
    connection = portal_services.connection_get(org=agent.organization)
    try:
        with portal_services.client_for(connection=connection) as client:
            started = client.agent_generate(
                prompt=agent.system_prompt or None,
                image=_media_value(agent.image, agent.image_url),
                audio=_media_value(agent.audio, agent.audio_url),
                aspect_ratio=agent.aspect_ratio,  # type: ignore[arg-type]
                framing=agent.framing,  # type: ignore[arg-type]
                transparency=agent.transparency,
                model=agent.model,  # type: ignore[arg-type]
                idempotency_key=str(agent.public_id),
            )
    except _REFUSALS as error:
        agent_fail(agent=agent, reason=_refusal_message(error), source=StatusSource.SUBMIT)
        return agent
    now = timezone.now()
    claimed = Agent.objects.filter(pk=agent.pk, status=AgentStatus.SUBMITTING).update(
        code=started.agent_id,
        status=AgentStatus.PROCESSING,
        updated_at=now,
        submitted_at=now,
        next_poll_at=now + timedelta(seconds=settings.AGENT_POLL_INTERVAL),
        lease_until=None,
        consecutive_errors=0,
    )
    agent.refresh_from_db()
    if claimed:
        _history(agent, from_status=AgentStatus.SUBMITTING, source=StatusSource.SUBMIT)
    return agent


def agents_submit_sweep(*, older_than: timedelta | None = None) -> list[int]:
    """Re-queue rows stuck in `submitting` (a worker died, a lost message): the key replays."""
    cutoff = timezone.now() - (older_than or timedelta(seconds=60))
    stuck = list(
        Agent.objects.filter(status=AgentStatus.SUBMITTING, created_at__lt=cutoff)
        .filter(submit_attempts__lt=settings.AGENT_SUBMIT_MAX_ATTEMPTS)
        .values_list("pk", flat=True)[:500]
    )
    from agents import tasks

    for pk in stuck:
        tasks.agent_submit.delay(pk)
    given_up = Agent.objects.filter(
        status=AgentStatus.SUBMITTING,
        created_at__lt=cutoff,
        submit_attempts__gte=settings.AGENT_SUBMIT_MAX_ATTEMPTS,
    )
    for agent in given_up:
        agent_fail(
            agent=agent,
            reason="bitHuman could not be reached to start this agent. Retry it.",
            source=StatusSource.SUBMIT,
        )
    return stuck


def agent_fail(*, agent: Agent, reason: str, source: str) -> bool:
    """Fail a non-terminal agent (compare-and-set). Returns whether it changed."""
    previous = agent.status
    now = timezone.now()
    changed = (
        Agent.objects.filter(pk=agent.pk)
        .exclude(status__in=TERMINAL_STATUSES)
        .update(
            status=AgentStatus.FAILED,
            error_message=reason,
            failed_at=now,
            updated_at=now,
            lease_until=None,
            next_poll_at=None,
        )
    )
    if changed:
        agent.refresh_from_db()
        _history(agent, from_status=previous, source=source)
        events.agent_outcome_record(agent=agent, previous=previous)
    return bool(changed)


@dataclass(frozen=True)
class _StatusWrite:
    """What an upstream answer writes (see `agent_status_apply`)."""

    status: str
    progress: float
    step: str
    message: str
    supported_models: list[str] | None  # None: keep ours
    error_message: str  # used only when the answer is `failed`

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def _status_write(*, agent: Agent, status: bh.AgentStatus) -> _StatusWrite | None:
    new_status = status.status if status.status in AgentStatus.values else None
    if new_status is None or new_status == AgentStatus.SUBMITTING:
        logger.warning("Ignoring unknown upstream status %r for agent %s", status.status, agent.pk)
        return None
    return _StatusWrite(
        status=new_status,
        progress=1.0 if new_status == AgentStatus.READY else _progress_clean(status.progress),
        step=_text_clean(status.current_step)[:30],
        message=_text_clean(status.progress_msg)[:300],
        supported_models=list(status.supported_models) if status.supported_models else None,
        error_message=_text_clean(status.error_message)
        or "bitHuman reported the generation failed.",
    )


def _progress_clean(value: float | None) -> float:
    """Upstream progress as a share in 0..1: NaN, infinities and out-of-range values (bitHuman's
    JSON parser accepts NaN) would break the forward-only rule and the pages."""
    progress = float(value or 0.0)
    return min(max(progress, 0.0), 1.0) if math.isfinite(progress) else 0.0


def _text_clean(value: str | None) -> str:
    """Upstream text we can store: PostgreSQL text holds no NUL."""
    return (value or "").replace("\x00", "")


def _status_fields(write: _StatusWrite, now: datetime) -> dict[str, Any]:
    """The columns a write sets (the batch statement sets the same ones)."""
    fields: dict[str, Any] = {
        "status": write.status,
        "progress": write.progress,
        "current_step": write.step,
        "progress_message": write.message,
        "consecutive_errors": 0,
        "updated_at": now,
    }
    if write.supported_models is not None:
        fields["supported_models"] = write.supported_models
    if write.status == AgentStatus.READY:
        fields.update(ready_at=now, next_poll_at=None, lease_until=None)
    elif write.status == AgentStatus.FAILED:
        fields.update(
            failed_at=now, next_poll_at=None, lease_until=None, error_message=write.error_message
        )
    return fields


def _needs_history(*, agent: Agent, previous: str, source: str) -> bool:
    """A history row for a new status (every webhook-driven write too); progress and step moves
    within one status only update the row."""
    return agent.status != previous or source == StatusSource.WEBHOOK


def agent_status_apply(*, agent: Agent, status: bh.AgentStatus, source: str) -> bool:
    """Apply an upstream status answer if it is news. Returns whether the row changed.

    Terminal agents absorb everything; an intermediate answer whose progress is behind ours is
    stale (out of order) and ignored; an identical answer writes nothing.
    """
    write = _status_write(agent=agent, status=status)
    if write is None:
        return False
    query = Agent.objects.filter(pk=agent.pk).exclude(status__in=TERMINAL_STATUSES)
    if not write.is_terminal:
        query = query.filter(progress__lte=write.progress)
    # Only changed rows are written: skip when nothing visible differs.
    query = query.filter(
        ~Q(status=write.status)
        | ~Q(progress=write.progress)
        | ~Q(current_step=write.step)
        | ~Q(progress_message=write.message)
    )
    previous = agent.status
    changed = query.update(**_status_fields(write, timezone.now()))
    if changed:
        agent.refresh_from_db()
        if _needs_history(agent=agent, previous=previous, source=source):
            _history(agent, from_status=previous, source=source)
        events.agent_outcome_record(agent=agent, previous=previous)
    return bool(changed)


# --- Batch writes (the poller) ------------------------------------------------------------------

# Rows per statement: well under SQLite's 32,766 parameters and PostgreSQL's 65,535.
_BATCH_ROWS = 500


def _batch_statements_supported() -> bool:
    """`WITH v AS (VALUES ...) UPDATE ... FROM v ... RETURNING`: PostgreSQL, and SQLite from
    3.35 (Django 6.1 requires 3.37). Any other database gets the per-row writes."""
    return connection.vendor in ("postgresql", "sqlite")


def _values_row(types: Sequence[str]) -> str:
    """One row of a VALUES list. PostgreSQL needs each parameter's type (a VALUES column of
    bare parameters is text); SQLite keeps the type of each bound value."""
    if connection.vendor == "postgresql":
        return "(" + ", ".join(f"CAST(%s AS {db_type})" for db_type in types) + ")"
    return "(" + ", ".join("%s" for _ in types) + ")"


def _param(db_type: str) -> str:
    return f"CAST(%s AS {db_type})" if connection.vendor == "postgresql" else "%s"


def _db_types(*names: str) -> list[str]:
    """Each Agent column's type as a CAST names it (PostgreSQL's VALUES rows need them)."""
    types = []
    for name in names:
        field = Agent._meta.get_field(name)
        if not isinstance(field, Field):
            raise TypeError(f"Agent.{name} is not a column")
        types.append(field.cast_db_type(connection) or "text")
    return types


def _datetime_param(value: datetime | None) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


_TERMINAL_SQL = ", ".join(f"'{status}'" for status in sorted(TERMINAL_STATUSES))

# The compare-and-set of `agent_status_apply`, for many rows in one statement: a row changes
# only when it is not terminal, the answer is not behind it (terminal answers always apply) and
# something visible differs. RETURNING names the rows that changed.
_STATUSES_SQL = """
WITH v (agent_id, status, progress, current_step, progress_message, supported_models,
        error_message) AS (VALUES {rows})
UPDATE {table} AS a SET
    status = v.status,
    progress = v.progress,
    current_step = v.current_step,
    progress_message = v.progress_message,
    consecutive_errors = 0,
    updated_at = {now},
    supported_models = COALESCE(v.supported_models, a.supported_models),
    ready_at = CASE WHEN v.status = 'ready' THEN {now} ELSE a.ready_at END,
    failed_at = CASE WHEN v.status = 'failed' THEN {now} ELSE a.failed_at END,
    error_message = CASE WHEN v.status = 'failed' THEN v.error_message ELSE a.error_message END,
    next_poll_at = CASE WHEN v.status IN ({terminal}) THEN NULL ELSE a.next_poll_at END,
    lease_until = CASE WHEN v.status IN ({terminal}) THEN NULL ELSE a.lease_until END
FROM v
WHERE a.id = v.agent_id
    AND a.status NOT IN ({terminal})
    AND (v.status IN ({terminal}) OR a.progress <= v.progress)
    AND (a.status <> v.status OR a.progress <> v.progress
         OR a.current_step <> v.current_step OR a.progress_message <> v.progress_message)
RETURNING id
"""


def _statuses_update(writes: Sequence[tuple[Agent, _StatusWrite]], now: datetime) -> set[int]:
    """One statement per `_BATCH_ROWS` writes; returns the pks of the rows that changed."""
    types = _db_types(
        "id",
        "status",
        "progress",
        "current_step",
        "progress_message",
        "supported_models",
        "error_message",
    )
    changed: set[int] = set()
    timestamp = _param(_db_types("updated_at")[0])
    for start in range(0, len(writes), _BATCH_ROWS):
        chunk = writes[start : start + _BATCH_ROWS]
        sql = _STATUSES_SQL.format(
            rows=", ".join([_values_row(types)] * len(chunk)),
            table=connection.ops.quote_name(Agent._meta.db_table),
            now=timestamp,
            terminal=_TERMINAL_SQL,
        )
        params: list[Any] = []
        for agent, write in chunk:
            params += [
                agent.pk,
                write.status,
                write.progress,
                write.step,
                write.message,
                None if write.supported_models is None else json.dumps(write.supported_models),
                write.error_message,
            ]
        params += [_datetime_param(now)] * 3  # updated_at, ready_at, failed_at
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            changed.update(pk for (pk,) in cursor.fetchall())
    return changed


def agent_statuses_apply(
    *, answers: Sequence[tuple[Agent, bh.AgentStatus]], source: str
) -> set[int]:
    """`agent_status_apply` for many agents at once (the poller's batch), in one transaction and
    a constant number of statements: one compare-and-set UPDATE, one INSERT of the history rows,
    and for agents that reached ready or failed one query for their organizations (then their
    audit entry and webhook event, as `agent_outcome_record` writes them).

    The agents passed in are updated in place; returns the pks of the agents whose row changed.
    """
    writes = [
        (agent, write)
        for agent, status in answers
        if (write := _status_write(agent=agent, status=status)) is not None
    ]
    if not writes:
        return set()
    if not _batch_statements_supported():
        return {
            agent.pk
            for agent, status in answers
            if agent_status_apply(agent=agent, status=status, source=source)
        }
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        changed = _statuses_update(writes, now)
        history: list[AgentStatusChange] = []
        outcomes: list[tuple[Agent, str]] = []
        for agent, write in writes:
            if agent.pk not in changed:
                continue
            previous = agent.status
            for name, value in _status_fields(write, now).items():
                setattr(agent, name, value)
            if _needs_history(agent=agent, previous=previous, source=source):
                history.append(_history_row(agent, from_status=previous, source=source))
            if agent.status != previous and write.is_terminal:
                outcomes.append((agent, previous))
        AgentStatusChange.objects.bulk_create(history)
        if outcomes:
            organizations = Organization.objects.in_bulk(
                {agent.organization_id for agent, _ in outcomes}
            )
            for agent, previous in outcomes:
                agent.organization = organizations[agent.organization_id]
                events.agent_outcome_record(agent=agent, previous=previous)
    return changed


@dataclass(frozen=True)
class LeaseRelease:
    """One agent's end of a poller lease: when to poll it next, and its error count."""

    agent_pk: int
    next_poll_at: datetime
    # None: keep the count; 0: an answer came (reset); 1: one more transient error.
    errors: int | None = None


# Only rows still leased by `lease` and not terminal; next_poll_at only if nobody moved it
# meanwhile (a webhook asking for a poll now keeps its time). RETURNING may name only the
# table's own columns (SQLite), unqualified: the CTE's names differ from them.
_RELEASE_SQL = """
WITH v (agent_id, poll_at, errors) AS (VALUES {rows})
UPDATE {table} AS a SET
    lease_until = NULL,
    next_poll_at = CASE WHEN a.next_poll_at = {lease} THEN v.poll_at ELSE a.next_poll_at END,
    consecutive_errors = CASE WHEN v.errors IS NULL THEN a.consecutive_errors
                              WHEN v.errors = 0 THEN 0
                              ELSE a.consecutive_errors + 1 END
FROM v
WHERE a.id = v.agent_id AND a.lease_until = {lease} AND a.status NOT IN ({terminal})
RETURNING id, CASE WHEN next_poll_at <= {now} THEN 1 ELSE 0 END
"""


def agent_leases_release(
    *, lease: datetime, releases: Sequence[LeaseRelease], now: datetime | None = None
) -> set[int]:
    """Give up a poller batch's lease (`lease`, the value it wrote to `lease_until`) on these
    agents and schedule their next poll, in one statement per `_BATCH_ROWS` agents.

    Returns the released agents already due at `now` (default: the current time): those whose
    poll somebody asked for during the lease (`agent_refresh_now`), when every release here
    schedules one later than `now`.
    """
    if not releases:
        return set()
    now = now or timezone.now()
    if not _batch_statements_supported():
        for release in releases:
            _lease_release_one(lease=lease, release=release)
        due = Agent.objects.filter(
            pk__in=[release.agent_pk for release in releases],
            lease_until__isnull=True,
            next_poll_at__lte=now,
        )
        return set(due.values_list("pk", flat=True))
    types = _db_types("id", "next_poll_at", "consecutive_errors")
    datetime_param = _param(_db_types("lease_until")[0])
    asked: set[int] = set()
    for start in range(0, len(releases), _BATCH_ROWS):
        chunk = releases[start : start + _BATCH_ROWS]
        sql = _RELEASE_SQL.format(
            rows=", ".join([_values_row(types)] * len(chunk)),
            table=connection.ops.quote_name(Agent._meta.db_table),
            lease=datetime_param,
            now=datetime_param,
            terminal=_TERMINAL_SQL,
        )
        params: list[Any] = []
        for release in chunk:
            params += [release.agent_pk, _datetime_param(release.next_poll_at), release.errors]
        # The CASE, the WHERE, then RETURNING's comparison.
        params += [_datetime_param(lease), _datetime_param(lease), _datetime_param(now)]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            asked.update(pk for pk, due in cursor.fetchall() if due)
    return asked


def _lease_release_one(*, lease: datetime, release: LeaseRelease) -> None:
    fields: dict[str, Any] = {
        "lease_until": None,
        "next_poll_at": Case(
            When(next_poll_at=lease, then=Value(release.next_poll_at)),
            default=F("next_poll_at"),
            output_field=DateTimeField(),
        ),
    }
    if release.errors == 0:
        fields["consecutive_errors"] = 0
    elif release.errors is not None:
        fields["consecutive_errors"] = F("consecutive_errors") + 1
    Agent.objects.filter(pk=release.agent_pk, lease_until=lease).exclude(
        status__in=TERMINAL_STATUSES
    ).update(**fields)


# --- Prompt, deletion ---------------------------------------------------------------------------


def agent_prompt_update(*, actor: Membership, agent: Agent, text: str) -> PromptRevision:
    """Send the new system prompt to bitHuman, then record the revision (accepted or not)."""
    role_require(actor, Role.MEMBER, "edit prompts")
    organization_active_require(actor.organization)
    if not agent.is_ready:
        raise Conflict("The prompt can be changed once the agent is ready.", code="agent_not_ready")
    text = text.strip()
    if not text:
        raise ApplicationError("The prompt cannot be empty.", field="system_prompt")
    connection = portal_services.connection_get(org=agent.organization)
    try:
        with portal_services.client_for(connection=connection) as client:
            client.agent_prompt_update(code=agent.code, system_prompt=text)
    except bh_errors.BithumanError as error:
        PromptRevision.objects.create(
            agent=agent,
            text=text,
            author=_actor_user(actor),
            accepted=False,
            error_message=error.message,
        )
        raise upstream_failure(
            error, f"bitHuman did not accept the prompt: {error.message}", field="system_prompt"
        ) from None
    with transaction.atomic():
        revision = PromptRevision.objects.create(
            agent=agent, text=text, author=_actor_user(actor), accepted=True
        )
        Agent.objects.filter(pk=agent.pk).update(system_prompt=text, updated_at=timezone.now())
        activity_services.audit_record(
            org=agent.organization,
            actor=actor,
            action="agent.prompt_changed",
            target=agent,
            details={"revision": revision.pk, "text": text[:500]},
        )
    agent.system_prompt = text
    return revision


def agent_archive(*, actor: Membership, agent: Agent) -> Agent:
    """Delete upstream (if it exists there) and keep the history locally as archived."""
    role_require(actor, Role.MEMBER, "delete agents")
    if agent.code:
        connection = portal_services.connection_get(org=agent.organization)
        try:
            with portal_services.client_for(connection=connection) as client:
                client.agent_delete(code=agent.code)
        except bh_errors.AgentNotFoundError:
            pass  # already gone upstream (or a retried delete whose first answer was lost)
        except bh_errors.BithumanError as error:
            raise upstream_failure(
                error, f"bitHuman could not delete the agent: {error.message}"
            ) from None
    now = timezone.now()
    Agent.objects.filter(pk=agent.pk).update(
        archived_at=now, updated_at=now, next_poll_at=None, lease_until=None
    )
    activity_services.audit_record(
        org=agent.organization, actor=actor, action="agent.deleted", target=agent
    )
    agent.refresh_from_db()
    return agent


def agent_retry(*, actor: Membership, agent: Agent) -> Agent:
    """A new agent with the same inputs (a failed generation cannot be resumed upstream)."""
    role_require(actor, Role.MEMBER, "create agents")
    organization_active_require(actor.organization)
    if not agent.is_failed:
        raise Conflict("Only a failed agent can be retried.", code="agent_not_failed")
    with transaction.atomic():
        retry = Agent.objects.create(
            organization=agent.organization,
            name=agent.name,
            system_prompt=agent.system_prompt,
            model=agent.model,
            aspect_ratio=agent.aspect_ratio,
            framing=agent.framing,
            transparency=agent.transparency,
            image=agent.image.name,
            image_url=agent.image_url,
            audio=agent.audio.name,
            audio_url=agent.audio_url,
            created_by=_actor_user(actor),
        )
        _history(retry, from_status="", source=StatusSource.SUBMIT)
        _submit_enqueue(retry)
        activity_services.audit_record(
            org=agent.organization,
            actor=actor,
            action="agent.retried",
            target=retry,
            details={"retry_of": str(agent.public_id)},
        )
    return retry


def organization_agent_counts(*, org: Organization) -> dict[str, int]:
    agents = Agent.objects.for_org(org).active()
    return {"agents": agents.count(), "in_flight": agents.in_flight().count()}


# --- Polling ------------------------------------------------------------------------------------


def agent_refresh_now(*, agent: Agent) -> None:
    """Poll the agent at once rather than at its next turn (a webhook said it changed).

    Only `next_poll_at` moves: an agent leased by a running tick keeps the new time when that
    tick lets go, so the next tick polls it even if this one-agent poll finds it busy.
    """
    moved = (
        Agent.objects.filter(pk=agent.pk)
        .exclude(status__in=[*TERMINAL_STATUSES, AgentStatus.SUBMITTING])
        .update(next_poll_at=timezone.now())
    )
    if moved:
        from agents import tasks

        agent_pk = agent.pk
        transaction.on_commit(lambda: tasks.agent_poll_one.delay(agent_pk))
