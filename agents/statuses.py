"""Agent statuses: the forward-only rule, its one compare-and-set statement, the poller's leases.

- The rule (`status_write`, `_STATUSES_SQL`): a terminal agent (ready, failed) never changes; an
  intermediate answer applies only when its progress is not behind ours (answers arrive out of
  order from the poller and webhooks); an answer that changes nothing visible writes nothing.
- One statement applies it, for one agent (`agent_status_apply`: webhooks, a one-agent poll) or
  a poller batch (`agent_statuses_apply`): `WITH v AS (VALUES ...) UPDATE ... FROM v ...
  RETURNING`, on PostgreSQL and SQLite (3.35+; Django 6.1 needs 3.37), the two databases the
  portal runs on. A row that changed gets its history row, and an agent that reached ready or
  failed its audit entry and webhook event (`agents.events.agent_outcome_record`).
- `agent_fail`: fail a non-terminal agent (the deadline, refusals, a lost upstream agent).
- Leases: the poller claims due agents (`agents_claim`: `SELECT ... FOR UPDATE SKIP LOCKED`, a
  lease value unique to its batch) and gives them back in one statement (`agent_leases_release`),
  keeping a poll time somebody moved meanwhile.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone

from agents import events
from agents.models import TERMINAL_STATUSES, Agent, AgentStatus, AgentStatusChange, StatusSource
from portal.bithuman import types as bh
from portal.models import Organization

logger = logging.getLogger(__name__)


# --- History ------------------------------------------------------------------------------------


def history_record(agent: Agent, *, from_status: str, source: str) -> None:
    """One history row for the agent as it is now, coming from `from_status`."""
    history_row(agent, from_status=from_status, source=source).save()


def history_row(agent: Agent, *, from_status: str, source: str) -> AgentStatusChange:
    return AgentStatusChange(
        agent=agent,
        from_status=from_status,
        to_status=agent.status,
        progress=agent.progress,
        current_step=agent.current_step,
        message=(agent.error_message or agent.progress_message)[:300],
        request_id=agent.error_request_id if agent.status == AgentStatus.FAILED else "",
        source=source,
        attempt=agent.attempt,
    )


def agent_fail(*, agent: Agent, reason: str, source: str, request_id: str | None = None) -> bool:
    """Fail a non-terminal agent (compare-and-set). Returns whether it changed. `request_id`:
    bitHuman's X-Request-Id of the call that failed it, kept for its support."""
    previous = agent.status
    now = timezone.now()
    changed = (
        Agent.objects.filter(pk=agent.pk)
        .exclude(status__in=TERMINAL_STATUSES)
        .update(
            status=AgentStatus.FAILED,
            error_message=reason,
            error_request_id=request_id or "",
            failed_at=now,
            updated_at=now,
            lease_until=None,
            next_poll_at=None,
        )
    )
    if changed:
        agent.refresh_from_db()
        history_record(agent, from_status=previous, source=source)
        events.agent_outcome_record(agent=agent, previous=previous)
    return bool(changed)


def agent_overdue_mark(*, agent: Agent, reason: str, next_poll_at: datetime) -> bool:
    """An unfinished agent past its deadline becomes `overdue` (compare-and-set from any
    intermediate status): not failed, polled at `next_poll_at`. Returns whether it changed."""
    previous = agent.status
    now = timezone.now()
    changed = (
        Agent.objects.filter(pk=agent.pk)
        .exclude(status__in=[*TERMINAL_STATUSES, AgentStatus.OVERDUE, AgentStatus.SUBMITTING])
        .update(
            status=AgentStatus.OVERDUE,
            progress_message=reason[:300],
            updated_at=now,
            next_poll_at=next_poll_at,
        )
    )
    if changed:
        agent.refresh_from_db()
        history_record(agent, from_status=previous, source=StatusSource.POLL)
    return bool(changed)


# --- The rule -----------------------------------------------------------------------------------


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
    if new_status is None or new_status in (AgentStatus.SUBMITTING, AgentStatus.OVERDUE):
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
    stale (out of order) and ignored; an identical answer writes nothing. The same statement
    as the poller's batch (`agent_statuses_apply`), for one row; the agent is reloaded after a
    change.
    """
    changed = agent_statuses_apply(answers=[(agent, status)], source=source)
    if changed:
        agent.refresh_from_db()
    return bool(changed)


# --- The statement ------------------------------------------------------------------------------


# Rows per statement: well under SQLite's 32,766 parameters and PostgreSQL's 65,535.
_BATCH_ROWS = 500


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
# something visible differs. An overdue row keeps `overdue` through intermediate answers (their
# progress still shows) and takes ready or failed. RETURNING names the rows that changed.
_STATUSES_SQL = """
WITH v (agent_id, status, progress, current_step, progress_message, supported_models,
        error_message) AS (VALUES {rows})
UPDATE {table} AS a SET
    status = CASE WHEN a.status = 'overdue' AND v.status NOT IN ({terminal}) THEN a.status
                  ELSE v.status END,
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
    AND ((a.status <> v.status AND (a.status <> 'overdue' OR v.status IN ({terminal})))
         OR a.progress <> v.progress
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
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        changed = _statuses_update(writes, now)
        history: list[AgentStatusChange] = []
        outcomes: list[tuple[Agent, str]] = []
        for agent, write in writes:
            if agent.pk not in changed:
                continue
            previous = agent.status
            fields = _status_fields(write, now)
            if previous == AgentStatus.OVERDUE and not write.is_terminal:
                fields["status"] = AgentStatus.OVERDUE  # as the statement kept it
            for name, value in fields.items():
                setattr(agent, name, value)
            if _needs_history(agent=agent, previous=previous, source=source):
                history.append(history_row(agent, from_status=previous, source=source))
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


# --- Leases (the poller) ------------------------------------------------------------------------


@dataclass
class Batch:
    """Agents leased by one claim; `lease` is the value this batch wrote to `lease_until`."""

    lease: datetime
    agents: list[Agent]
    # Each agent's next_poll_at before the claim: an agent left out for budget keeps its place.
    due_at: dict[int, datetime]


def agents_due_count(*, now: datetime, limit: int) -> int:
    """How many agents are due for a poll (what `agents_claim` would find), counting at most
    `limit`."""
    due = Agent.objects.due_for_poll(now).exclude(code="")
    return len(due.order_by().values_list("pk", flat=True)[:limit])


def agents_claim(
    *,
    limit: int,
    now: datetime | None = None,
    pks: Iterable[int] | None = None,
    exclude_organizations: Iterable[int] = (),
) -> Batch | None:
    """Lease up to `limit` due agents (oldest due first) for AGENT_POLL_LEASE seconds and commit;
    None when none is due."""
    now = now or timezone.now()
    due = Agent.objects.due_for_poll(now).exclude(code="")
    if pks is not None:
        due = due.filter(pk__in=list(pks))
    excluded = list(exclude_organizations)
    if excluded:
        due = due.exclude(organization_id__in=excluded)
    # The microseconds make the lease value this batch's own, to release only what it holds.
    lease = timezone.now() + timedelta(
        seconds=float(settings.AGENT_POLL_LEASE),
        microseconds=random.randrange(1_000_000),  # noqa: S311
    )
    with transaction.atomic():
        rows = list(
            due.order_by("next_poll_at", "pk")
            .select_for_update(skip_locked=True)
            .values_list("pk", "next_poll_at")[:limit]
        )
        if not rows:
            return None
        # next_poll_at = the lease's end: if this tick dies, the agent is due when it expires.
        Agent.objects.filter(pk__in=[pk for pk, _ in rows]).update(
            lease_until=lease, next_poll_at=lease
        )
    agents = list(Agent.objects.filter(pk__in=[pk for pk, _ in rows]))
    due_at = {pk: due_time for pk, due_time in rows}
    agents.sort(key=lambda agent: (due_at[agent.pk], agent.pk))
    return Batch(lease=lease, agents=agents, due_at=due_at)


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
