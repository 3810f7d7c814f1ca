"""The status poller: brings in-flight agents up to date with bitHuman.

Beat runs `agents.tasks.agents_poll_tick` every AGENT_POLL_TICK seconds. It counts the agents
due (up to what AGENT_POLL_FANOUT drains would take) and queues that many drains
(`agents_poll_drain`), which any worker process, on any machine, runs at the same time: adding
worker processes adds polling capacity. There is no global lock: the leases below make
concurrent drains safe (no agent is held by two, none is polled twice within its cadence). One
drain (`tick`) makes one pass over the agents that are due, in batches:

1. Claim (`agents.statuses.agents_claim`): in a short transaction, `SELECT ... FOR UPDATE
   SKIP LOCKED` the due agents (in flight, next poll time passed, no live lease), stamp a lease
   (`lease_until`, unique to this batch) and set `next_poll_at` to the lease's end, then commit.
   Another tick or worker skips these rows; if this one dies, the agents fall due again when
   the lease ends.
2. Budget: group the agents by bitHuman account (`ratelimit.budget_key`: its user_id once
   known, so two organizations on secrets of one account share one budget). With Redis one
   script call per batch answers for every account: an account deferred by a 429 is skipped
   until its Retry-After has passed; otherwise the shared token bucket (agents.ratelimit)
   grants at most the plan's Read budget, and agents beyond it keep their place in line for
   the next tick.
3. Fetch (`portal.bithuman.aio.statuses_fetch`): outside any transaction, the process's
   background event loop fetches every granted status concurrently (AGENT_POLL_CONCURRENCY at
   most) over connections kept open from batch to batch, without retries: the next poll is the
   retry. The first 429 of an account stops its remaining requests.
4. Apply, in one transaction and a constant number of statements whatever the batch's size:
   `agents.statuses.agent_statuses_apply` (one compare-and-set UPDATE for every answer:
   forward only, terminal absorbs, duplicates write nothing; one INSERT of the history rows;
   the audit entries and webhook events of agents that reached ready or failed), then one
   statement releasing every lease this batch still holds (compared by its value) with the
   next poll time: the cadence after an answer (counted from the tick's start, so the agent is
   due at the tick one cadence later), a backoff after a transient error (429, 5xx, timeouts
   never fail an agent), the deferral after a 429. A time set by someone else meanwhile (a
   webhook asking for an immediate refresh) is kept.
5. Deadline: an agent still unfinished long after its model's typical duration
   (TYPICAL_SECONDS x AGENT_DEADLINE_FACTOR) becomes `overdue`, not failed: polled at the
   slowest cadence (AGENT_POLL_MAX_INTERVAL; a webhook still brings it in at once), and a
   later ready or failed applies. Failing it for good is the user's "Give up".
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents import ratelimit, services, statuses
from agents.models import Agent, AgentStatus, StatusSource
from agents.statuses import Batch, agents_claim
from organizations import connections as org_connections
from portal.bithuman import aio
from portal.bithuman import errors as bh_errors
from portal.bithuman import types as bh
from portal.bithuman.client import BithumanClient
from portal.models import BithumanConnection, Organization

logger = logging.getLogger(__name__)

# Seconds to stay away from an account that answered 429 without a Retry-After.
DEFAULT_RETRY_AFTER = aio.DEFAULT_RETRY_AFTER
# Consecutive "agent not found" answers after which the agent fails (it was deleted upstream, or
# the organization's connection now points at another bitHuman account).
NOT_FOUND_LIMIT = 5


# --- Settings -----------------------------------------------------------------------------------


def _interval() -> float:
    return float(settings.AGENT_POLL_INTERVAL)


def _lease_seconds() -> float:
    return float(settings.AGENT_POLL_LEASE)


def _max_interval() -> float:
    """The slowest cadence, also the cap of the error backoff."""
    return max(float(getattr(settings, "AGENT_POLL_MAX_INTERVAL", 60.0)), _interval())


def _fetch_deadline() -> float:
    """Seconds one batch may spend fetching: well inside its lease, so its writes come first."""
    return _lease_seconds() / 4


def tick_worst_case_seconds() -> float:
    """How long a drain can run: it stops claiming after one fetch deadline, and the batch it
    started then may spend one more learning plans and one more fetching (plus database time)."""
    return 3 * _fetch_deadline() + 2.0


def _fanout() -> int:
    return max(1, int(getattr(settings, "AGENT_POLL_FANOUT", 4)))


def _batch_size() -> int:
    return max(1, int(settings.AGENT_POLL_BATCH))


def drains_wanted(*, now: datetime | None = None) -> int:
    """How many drains the agents due now need: one per batch, at most AGENT_POLL_FANOUT (one
    indexed count, bounded by what that many batches would claim)."""
    most = _fanout() * _batch_size()
    due = statuses.agents_due_count(now=now or timezone.now(), limit=most)
    return min(_fanout(), math.ceil(due / _batch_size()))


def drain_expires_seconds() -> float:
    """A queued drain not started within this long is dropped: the next tick queues fresh ones
    (a backlog of drains must not outlive the backlog of agents)."""
    return 2 * float(getattr(settings, "AGENT_POLL_TICK", 1.0)) + 1.0


# --- Cadence and deadline -----------------------------------------------------------------------


def _started_at(agent: Agent) -> datetime:
    return agent.submitted_at or agent.created_at


def _typical_seconds(agent: Agent) -> int:
    return services.TYPICAL_SECONDS.get(agent.model, max(services.TYPICAL_SECONDS.values()))


def cadence_seconds(*, agent: Agent, now: datetime) -> float:
    """Seconds until the next poll after an answer.

    Every AGENT_POLL_INTERVAL (5 s) early on and for short models; long models (essence-2,
    expression-2: 40-90 min) are polled every typical/60 seconds later in their run, at most
    AGENT_POLL_MAX_INTERVAL. A webhook still brings any of them in at once.
    """
    if agent.status == AgentStatus.OVERDUE:
        return _max_interval()  # past its deadline: the slowest cadence (a webhook still wins)
    interval = _interval()
    typical = _typical_seconds(agent)
    elapsed = (now - _started_at(agent)).total_seconds()
    if typical <= 300 or elapsed < max(60.0, typical * 0.05):
        return interval
    return min(max(interval, typical / 60), _max_interval())


def next_poll_after_answer(*, agent: Agent, now: datetime) -> datetime:
    """When to poll an agent again after an answer at `now`: one cadence later, so no agent is
    polled twice within AGENT_POLL_INTERVAL. Beat ticks every AGENT_POLL_TICK (1 s), so the tick
    after that finds it due: it waits at most one tick period past its cadence. (With ticks as
    far apart as the cadence, an answer always came just too late for the next tick, and every
    agent was polled every 2 x AGENT_POLL_INTERVAL.)"""
    return now + timedelta(seconds=cadence_seconds(agent=agent, now=now))


def _backoff_seconds(errors: int) -> float:
    """After `errors` consecutive transient errors: exponential, capped, with jitter."""
    delay = min(_interval() * 2 ** max(errors - 1, 0), _max_interval())
    return delay * random.uniform(0.8, 1.2)  # noqa: S311 - spreads retries, not security


def deadline_of(agent: Agent) -> datetime:
    factor = float(settings.AGENT_DEADLINE_FACTOR)
    return _started_at(agent) + timedelta(seconds=_typical_seconds(agent) * factor)


def _duration_words(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{max(minutes, 1)} minute{'s' if minutes != 1 else ''}"
    return f"{seconds / 3600:.1f} hours"


def _overdue_reason(agent: Agent, now: datetime) -> str:
    waited = (now - _started_at(agent)).total_seconds()
    return (
        f"Overdue: {agent.model} usually takes about "
        f"{_duration_words(_typical_seconds(agent))} and this one is still unfinished after "
        f"{_duration_words(waited)}. bitHuman may still finish it; it is checked every "
        f"{_duration_words(_max_interval())}."
    )


# --- Claim and release --------------------------------------------------------------------------


def _release(
    *, agent: Agent, batch: Batch, next_poll_at: datetime, errors: int | None = None
) -> None:
    """Give up this batch's lease on one agent (if still ours) and schedule its next poll.

    A next_poll_at somebody else changed during the lease (`agent_refresh_now`) is kept.
    `errors`: None keeps the error count, 0 resets it, 1 adds one.
    """
    _releases_write(
        batch=batch,
        releases=[
            statuses.LeaseRelease(agent_pk=agent.pk, next_poll_at=next_poll_at, errors=errors)
        ],
    )


def _releases_write(
    *, batch: Batch, releases: Sequence[statuses.LeaseRelease], now: datetime | None = None
) -> set[int]:
    return statuses.agent_leases_release(lease=batch.lease, releases=releases, now=now)


# --- Accounts -----------------------------------------------------------------------------------


@dataclass
class AccountGroup:
    """The claimed agents that one bitHuman account answers for."""

    key: str
    base_url: str
    api_secret: str = field(repr=False)
    organization_ids: set[int] = field(default_factory=set)
    # Organizations marked "bitHuman account suspended" (cleared by an answer).
    suspended_organization_ids: set[int] = field(default_factory=set)
    agents: list[Agent] = field(default_factory=list)


def _groups(agents: Sequence[Agent]) -> list[AccountGroup]:
    org_ids = {agent.organization_id for agent in agents}
    connections = {
        connection.organization_id: connection
        for connection in BithumanConnection.objects.filter(
            organization_id__in=org_ids
        ).select_related("organization")
    }
    groups: dict[str, AccountGroup] = {}
    group_of: dict[int, AccountGroup] = {}  # organization -> its account's group
    for agent in agents:
        group = group_of.get(agent.organization_id)
        if group is None:
            connection = connections.get(agent.organization_id)
            if connection is None:
                org = Organization.objects.get(pk=agent.organization_id)
                connection = org_connections.connection_get(org=org)
            key = ratelimit.budget_key(connection.api_secret)
            group = groups.setdefault(
                key,
                AccountGroup(
                    key=key, base_url=connection.base_url, api_secret=connection.api_secret
                ),
            )
            group.organization_ids.add(agent.organization_id)
            if connection.organization.bithuman_suspended_at is not None:
                group.suspended_organization_ids.add(agent.organization_id)
            group_of[agent.organization_id] = group
        group.agents.append(agent)
    return list(groups.values())


def _read_limit(group: AccountGroup, *, may_look_up: bool) -> int:
    """The account's read budget per minute; learns its plan from /v1/me once an hour."""
    if may_look_up and ratelimit.plan_lookup_claim(key=group.key):
        free = ratelimit.read_limit(key=group.key)
        if ratelimit.tokens_take(key=group.key, wanted=1, per_minute=free):
            try:
                with BithumanClient(
                    base_url=group.base_url,
                    api_secret=group.api_secret,
                    timeout=min(5.0, _fetch_deadline() / 2),
                    max_retries=0,
                ) as client:
                    account = client.account_get()
            except bh_errors.RateLimitedError as error:
                ratelimit.account_defer(
                    key=group.key, seconds=error.retry_after or DEFAULT_RETRY_AFTER
                )
            except bh_errors.BithumanError as error:
                logger.info("bitHuman /v1/me failed (plan unknown, Free limits): %s", error)
            else:
                ratelimit.account_learn(key=group.key, api_secret=group.api_secret, account=account)
                # From now on the account's own budget (it started where the secret's stood).
                group.key = ratelimit.budget_key(group.api_secret)
    return ratelimit.read_limit(key=group.key)


def _read_limits(groups: Sequence[AccountGroup], *, look_up_until: float) -> dict[str, int]:
    """Each account's read budget per minute: remembered plans in one cache round trip; an
    account whose plan is not known yet (not deferred) asks /v1/me while time allows."""
    limits = ratelimit.read_limits_known(keys=[group.key for group in groups])
    for group in groups:
        if group.key not in limits:
            may_look_up = time.monotonic() < look_up_until
            if ratelimit.account_deferral_remaining(key=group.key) > 0:
                may_look_up = False  # reads_take will say how long; nothing is sent now
            limits[group.key] = _read_limit(group, may_look_up=may_look_up)
    return limits


# --- Fetch (the only part that waits on the network) --------------------------------------------

type FetchResult = aio.StatusResult


def _statuses_fetch(
    plan: Sequence[tuple[AccountGroup, Sequence[Agent]]],
) -> tuple[dict[int, FetchResult], dict[str, float]]:
    """Every planned status, concurrently (`portal.bithuman.aio.statuses_fetch`); and the
    Retry-After of each account that said 429. Answers missing after the fetch deadline are
    absent."""
    deadline = _fetch_deadline()
    requests = [
        aio.StatusRequest(
            key=agent.pk,
            account=aio.StatusAccount(
                key=group.key, base_url=group.base_url, api_secret=group.api_secret
            ),
            agent_id=agent.code,
        )
        for group, agents in plan
        for agent in agents
    ]
    fetched = aio.statuses_fetch_sync(
        requests,
        concurrency=max(1, int(settings.AGENT_POLL_CONCURRENCY)),
        deadline=deadline,
        timeout=min(float(settings.BITHUMAN_TIMEOUT), deadline),
        max_retries=0,  # the next poll is the retry
    )
    return fetched.results, fetched.rate_limited


# --- One batch ----------------------------------------------------------------------------------


@dataclass
class PollReport:
    claimed: int = 0
    requested: int = 0
    changed: int = 0
    over_budget: int = 0
    deferred: int = 0
    errors: int = 0
    failed: int = 0


@dataclass
class BatchOutcome:
    # Organizations whose account is out of budget or deferred: not worth claiming again in
    # this tick.
    exhausted: set[int] = field(default_factory=set)
    # Agents whose poll somebody asked for (a webhook) while this batch held them.
    asked: set[int] = field(default_factory=set)


def _batch_process(batch: Batch, report: PollReport) -> BatchOutcome:
    """Budget, fetch and apply one claimed batch."""
    report.claimed += len(batch.agents)
    # Plan lookups (one request each, sequential) get half the fetch deadline; later accounts
    # keep the Free limits until a later tick.
    look_up_until = time.monotonic() + _fetch_deadline() / 2
    exhausted: set[int] = set()
    plan: list[tuple[AccountGroup, list[Agent]]] = []
    not_sent: list[statuses.LeaseRelease] = []
    groups = _groups(batch.agents)
    limits = _read_limits(groups, look_up_until=look_up_until)
    grants = ratelimit.reads_take(
        wants=[(group.key, len(group.agents), limits[group.key]) for group in groups]
    )
    for group, grant in zip(groups, grants, strict=True):
        if grant.deferred_for > 0:
            exhausted |= group.organization_ids
            until = timezone.now() + timedelta(seconds=grant.deferred_for)
            not_sent += [statuses.LeaseRelease(agent.pk, until) for agent in group.agents]
            report.deferred += len(group.agents)
            continue
        granted = grant.granted
        if granted < len(group.agents):
            exhausted |= group.organization_ids
            # Beyond the budget: back in line at their old place, for the next tick.
            not_sent += [
                statuses.LeaseRelease(agent.pk, batch.due_at[agent.pk])
                for agent in group.agents[granted:]
            ]
            report.over_budget += len(group.agents) - granted
        if granted:
            plan.append((group, group.agents[:granted]))
    _releases_write(batch=batch, releases=not_sent)
    if not plan:
        return BatchOutcome(exhausted=exhausted)

    # No transaction and no row lock is held here: only the leases, which are committed.
    results, limited = _statuses_fetch(plan)
    deferred_for = {
        key: ratelimit.account_defer(key=key, seconds=seconds) for key, seconds in limited.items()
    }
    outcomes: list[tuple[Agent, FetchResult, float]] = []
    for group, agents in plan:
        if group.key in deferred_for:
            exhausted |= group.organization_ids
        for agent in agents:
            result = results.get(agent.pk)
            if result is None:
                result = bh_errors.TransportError(
                    message="no answer within the poller's deadline", request_may_have_arrived=True
                )
            outcomes.append((agent, result, deferred_for.get(group.key, 0.0)))
    asked = _results_apply(batch=batch, outcomes=outcomes, report=report)
    org_connections.suspensions_record(
        outcomes=[(agent.organization_id, result) for agent, result, _deferral in outcomes],
        marked={org for group, _agents in plan for org in group.suspended_organization_ids},
    )
    return BatchOutcome(exhausted=exhausted, asked=asked)


def _results_apply(
    *,
    batch: Batch,
    outcomes: Sequence[tuple[Agent, FetchResult, float]],
    report: PollReport,
) -> set[int]:
    """Write a batch's answers in one transaction: one compare-and-set statement for every
    status (agents.statuses.agent_statuses_apply), one statement releasing the leases, and
    per agent only the rare changes (overdue, unknown upstream). Returns the agents
    whose poll a webhook asked for meanwhile (every time released here is in the future)."""
    now = timezone.now()
    answers: list[tuple[Agent, bh.AgentStatus]] = []
    releases: list[statuses.LeaseRelease] = []
    failures: list[tuple[Agent, str]] = []
    overdue: list[Agent] = []
    for agent, result, deferral in outcomes:
        if isinstance(result, aio.Unsent | bh_errors.RateLimitedError):
            # Not the agent's fault: no error counted; nothing goes to the account until then.
            if isinstance(result, bh_errors.RateLimitedError):
                report.requested += 1
            report.deferred += 1
            releases.append(statuses.LeaseRelease(agent.pk, now + timedelta(seconds=deferral)))
            continue
        report.requested += 1
        if isinstance(result, bh.AgentStatus):
            answers.append((agent, result))
            continue
        report.errors += 1
        errors = agent.consecutive_errors + 1
        logger.info("Polling agent %s failed (%d in a row): %s", agent.pk, errors, result)
        if isinstance(result, bh_errors.AgentNotFoundError) and errors >= NOT_FOUND_LIMIT:
            failures.append(
                (
                    agent,
                    f"bitHuman no longer knows agent {agent.code}: it was deleted there, or this "
                    "organization's bitHuman connection changed to another account.",
                )
            )
        else:
            if now >= deadline_of(agent) and agent.status != AgentStatus.OVERDUE:
                overdue.append(agent)
            releases.append(
                statuses.LeaseRelease(
                    agent.pk, now + timedelta(seconds=_backoff_seconds(errors)), errors=1
                )
            )
    with transaction.atomic():
        changed = statuses.agent_statuses_apply(answers=answers, source=StatusSource.POLL)
        report.changed += len(changed)
        for agent, status in answers:
            if status.is_terminal:
                continue  # the write above ended polling (or the agent had already ended)
            if now >= deadline_of(agent) and agent.status != AgentStatus.OVERDUE:
                overdue.append(agent)  # not failed: a later ready or failed still applies
            next_poll_at = next_poll_after_answer(agent=agent, now=now)
            releases.append(statuses.LeaseRelease(agent.pk, next_poll_at, errors=0))
        asked = _releases_write(batch=batch, releases=releases, now=now)
        for agent, reason in failures:
            if statuses.agent_fail(agent=agent, reason=reason, source=StatusSource.POLL):
                report.failed += 1
        for agent in overdue:
            statuses.agent_overdue_mark(
                agent=agent,
                reason=_overdue_reason(agent, now),
                next_poll_at=now + timedelta(seconds=_max_interval()),
            )
    return asked


# --- Entry points -------------------------------------------------------------------------------


def tick() -> PollReport:
    """One drain: a pass over the due agents, batch after batch, until none is due or the fetch
    deadline has passed. Any number may run at once (each batch holds its agents' leases)."""
    started = time.monotonic()
    # Agents rescheduled during this pass are due after `now`, so no agent is polled twice.
    now = timezone.now()
    batch_size = _batch_size()
    report = PollReport()
    skipped_organizations: set[int] = set()
    asked: set[int] = set()
    while time.monotonic() - started < _fetch_deadline():
        batch = None
        if asked:
            # A webhook asked for these while this tick held them (its own one-agent poll found
            # them leased): poll them again now rather than at the next tick.
            batch = agents_claim(
                limit=len(asked), pks=asked, exclude_organizations=skipped_organizations
            )
            asked = set()
        if batch is None:
            batch = agents_claim(
                limit=batch_size, now=now, exclude_organizations=skipped_organizations
            )
        if batch is None:
            break
        outcome = _batch_process(batch, report)
        skipped_organizations |= outcome.exhausted
        asked |= outcome.asked
    if report.claimed:
        logger.info("Poller tick: %s", report)
    return report


def poll_one(*, agent_pk: int) -> PollReport:
    """Poll one agent now if it is due and not leased (a webhook said it changed)."""
    report = PollReport()
    batch = agents_claim(limit=1, pks=[agent_pk])
    if batch is not None:
        _batch_process(batch, report)
    return report
