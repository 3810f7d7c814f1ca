"""Usage and credits: what the organization's agents spent, by day, model and agent; the
account's balance and runway; the pre-check before a generation (api/billing.md).

- Spend comes from GET /v1/usage (the account's metered events, read page by page over the
  period: at most MAX_PAGES x 200 events). An event belongs to the organization when its
  `agent_code` is one of the organization's agents (archived ones included): an account shared by
  several organizations shows each only its own agents, and the rest as "other use of the
  account". Refunds (`credit_refund_…`) count negative, whatever sign bitHuman gives them.
- Balance, plan/top-up split and minutes left come from GET /v2/credit-summaries. Runway is the
  balance over the account's average daily spend in the period (None without spend).
- Both are read through the account's Read budget (agents.readbudget) and cached
  USAGE_CACHE_SECONDS per account (agents.ratelimit.budget_key), never across accounts.
- Test mode reads the sandbox, whose figures follow from what happened in it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.utils import timezone

from activity.charts import Series, bar_chart
from agents import ratelimit, readbudget
from agents.models import Agent, AgentModel, AgentStatus
from organizations import connections
from portal.bithuman.errors import BithumanError
from portal.bithuman.types import CreditSummary, UsageEvent
from portal.errors import ApplicationError
from portal.models import ConnectionMode, Organization

logger = logging.getLogger(__name__)

USAGE_CACHE_SECONDS = 60
SUMMARY_CACHE_SECONDS = 30
# How old a balance the pre-check before a generation still trusts. An older balance errs on the
# lenient side (charges since are bitHuman's to refuse, 402); only a top-up in the meantime
# could make it refuse wrongly, and the Usage page reads the balance anew.
PRECHECK_MAX_AGE = 300
PAGE_LIMIT = 200
MAX_PAGES = 10
PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30
OTHER = "other"
_MODEL_LABELS = dict(AgentModel.choices)
_TONES = ("blue", "ok", "purple", "warn", "bad")


# --- Reading bitHuman (cached per account) ------------------------------------------------------


def _key(org: Organization) -> tuple[str, Any]:
    connection = connections.connection_get(org=org)
    return ratelimit.budget_key(connection.api_secret), connection


def credit_summary(
    *, org: Organization, fresh: bool = False, cached_only: bool = False
) -> CreditSummary | None:
    """The account's balance (GET /v2/credit-summaries), read again once it is
    SUMMARY_CACHE_SECONDS old; None when bitHuman cannot say now (unreachable, refused, or its
    Read budget is spent). `cached_only`: never ask bitHuman, take the last read if it is at
    most PRECHECK_MAX_AGE old (the pre-check before a generation)."""
    key, connection = _key(org)
    name = f"bithuman:credit-summary:{connection.mode}:{key}"
    cached = None if fresh else cache.get(name)
    if cached is not None and "at" in cached:
        age = time.time() - cached["at"]
        if age < (PRECHECK_MAX_AGE if cached_only else SUMMARY_CACHE_SECONDS):
            return CreditSummary.model_validate(cached["summary"])
    if cached_only:
        return None
    # One request per account at a time: concurrent readers do not each ask bitHuman (they go
    # without the figures meanwhile, and bitHuman's own 402 still stands behind the check).
    fetching = name + ":fetching"
    if not cache.add(fetching, 1, 10):
        return None
    try:
        if not readbudget.read_take(key=key):
            return None
        with connections.client_for(connection=connection, timeout=5, max_retries=0) as client:
            summary = client.credit_summary_get()
    except BithumanError as error:
        logger.info("credit-summaries failed for org %s: %s", org.pk, error)
        readbudget.rate_limited_record(key=key, error=error)
        connections.connection_outcome_record(connection=connection, error=error)
        return None
    finally:
        cache.delete(fetching)
    if summary.user_id:
        ratelimit.account_learn_user(api_secret=connection.api_secret, user_id=summary.user_id)
        # Learning the account renames the budget: keep the figures under the new name too.
        name = f"bithuman:credit-summary:{connection.mode}:{_key(org)[0]}"
    entry = {"at": time.time(), "summary": summary.model_dump(mode="json")}
    cache.set(name, entry, PRECHECK_MAX_AGE)
    return summary


@dataclass(frozen=True)
class _Events:
    events: tuple[UsageEvent, ...]
    truncated: bool


def _events(*, org: Organization, start: datetime) -> _Events | None:
    """The account's usage events since `start`, newest first; None when unreadable."""
    key, connection = _key(org)
    name = f"bithuman:usage:{connection.mode}:{key}:{start.date().isoformat()}"
    cached = cache.get(name)
    if cached is not None:
        return _Events(
            events=tuple(UsageEvent.model_validate(row) for row in cached["events"]),
            truncated=cached["truncated"],
        )
    events: list[UsageEvent] = []
    truncated = False
    try:
        with connections.client_for(connection=connection, timeout=5, max_retries=0) as client:
            for page_number in range(MAX_PAGES):
                if not readbudget.read_take(key=key):
                    return None
                page = client.usage_list(
                    limit=PAGE_LIMIT, offset=page_number * PAGE_LIMIT, start=start
                )
                events.extend(page.events)
                more = bool(page.pagination and page.pagination.has_more)
                if not more or not page.events:
                    break
            else:
                truncated = True
    except BithumanError as error:
        logger.info("usage failed for org %s: %s", org.pk, error)
        readbudget.rate_limited_record(key=key, error=error)
        connections.connection_outcome_record(connection=connection, error=error)
        return None
    cache.set(
        name,
        {"events": [e.model_dump(mode="json") for e in events], "truncated": truncated},
        USAGE_CACHE_SECONDS,
    )
    return _Events(events=tuple(events), truncated=truncated)


# --- The report ---------------------------------------------------------------------------------


@dataclass
class AgentSpend:
    agent: Agent
    generation: float = 0.0
    sessions: float = 0.0

    @property
    def total(self) -> float:
        return self.generation + self.sessions


@dataclass
class UsageReport:
    days: int
    start: date
    end: date
    test_mode: bool
    summary: CreditSummary | None
    available: bool  # whether /v1/usage could be read
    truncated: bool = False
    org_spent: float = 0.0
    account_spent: float = 0.0
    by_model: dict[str, float] = field(default_factory=dict)
    by_day: list[tuple[date, dict[str, float]]] = field(default_factory=list)
    by_agent: list[AgentSpend] = field(default_factory=list)

    @property
    def other_spent(self) -> float:
        """The account's spend on agents that are not this organization's."""
        return self.account_spent - self.org_spent

    @property
    def balance(self) -> float | None:
        return self.summary.balance if self.summary else None

    @property
    def daily_burn(self) -> float:
        return self.account_spent / self.days if self.days else 0.0

    @property
    def runway_days(self) -> float | None:
        """Days the balance lasts at the account's average daily spend in the period."""
        if self.balance is None or self.daily_burn <= 0:
            return None
        return max(self.balance, 0.0) / self.daily_burn

    def chart(self) -> dict[str, Any]:
        models = [m for m in self.by_model if self.by_model[m]]
        series = [
            Series(key=m, label=_MODEL_LABELS.get(m, "Other"), fill=_TONES[i % len(_TONES)])
            for i, m in enumerate(models)
        ]
        return bar_chart(
            chart_id="usage-by-day",
            title="Credits spent by day and model",
            labels=[day.strftime("%b %d") for day, _row in self.by_day],
            rows=[row for _day, row in self.by_day],
            series=series,
            unit=" credits",
            axis_label="Credits",
        )


def _is_generation(event: UsageEvent) -> bool:
    return "generation" in (event.activity_type or "") or "agent_generation" in (
        event.pricing_code or ""
    )


def usage_report(*, org: Organization, days: int = DEFAULT_PERIOD) -> UsageReport:
    """The organization's spend over the last `days` days (today included) and its account's
    balance and runway."""
    if days not in PERIODS:
        raise ApplicationError(
            f"Choose a period of {', '.join(map(str, PERIODS))} days.", field="days"
        )
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    connection = connections.connection_get(org=org)
    summary = credit_summary(org=org)
    read = _events(org=org, start=start)
    report = UsageReport(
        days=days,
        start=first,
        end=today,
        test_mode=connection.mode == ConnectionMode.TEST,
        summary=summary,
        available=read is not None,
        truncated=bool(read and read.truncated),
    )
    per_day: dict[date, dict[str, float]] = {first + timedelta(days=n): {} for n in range(days)}
    if read is None:
        report.by_day = sorted(per_day.items())
        return report
    codes = {e.agent_code for e in read.events if e.agent_code}
    agents = {
        agent.code: agent
        for agent in Agent.objects.for_org(org).filter(code__in=codes).order_by("created_at")
    }
    spend: dict[str, AgentSpend] = {}
    by_model: dict[str, float] = defaultdict(float)
    for event in read.events:
        amount = event.spent
        report.account_spent += amount
        agent = agents.get(event.agent_code or "")
        if agent is None:
            continue
        report.org_spent += amount
        model = agent.model if agent.model in _MODEL_LABELS else OTHER
        by_model[model] += amount
        day = timezone.localtime(event.created_at).date()
        if day in per_day:
            per_day[day][model] = per_day[day].get(model, 0.0) + amount
        row = spend.setdefault(agent.code, AgentSpend(agent=agent))
        if _is_generation(event):
            row.generation += amount
        else:
            row.sessions += amount
    report.by_model = dict(sorted(by_model.items(), key=lambda item: -item[1]))
    report.by_day = sorted(per_day.items())
    report.by_agent = sorted(spend.values(), key=lambda row: (-row.total, row.agent.name))
    return report


# --- The pre-check before a generation ----------------------------------------------------------


def generation_affordable_require(*, org: Organization, model: str) -> None:
    """Refuse a generation the account's balance cannot cover (api/rate-limits.md: "check
    credits before heavy operations"), counting the organization's submissions not yet
    charged. Nothing is billed. When the balance cannot be read, bitHuman decides (402)."""
    from agents.selectors import model_costs  # selectors import services; services import us

    # The balance as the new-agent page, the Usage page, its API or the dashboard last read it
    # (at most PRECHECK_MAX_AGE ago); what this organization submitted since is counted below. No
    # request in front of each create: a burst of API creates on the embedded stack (SQLite,
    # the sandbox in the same process) then failed with 503 (make test-faults, embedded case).
    summary = credit_summary(org=org, cached_only=True)
    if summary is None:
        return
    costs = model_costs(org=org)
    cost = costs.get(model)
    if cost is None:
        return
    pending = Agent.objects.for_org(org).filter(status=AgentStatus.SUBMITTING)
    waiting = sum(costs.get(m, 0) for m in pending.values_list("model", flat=True))
    left = summary.balance - waiting
    if left >= cost:
        return
    label = _MODEL_LABELS.get(model, model)
    queued = f" ({waiting:,} of it held for agents waiting to be sent)" if waiting else ""
    raise ApplicationError(
        f"{label} costs {cost:,} credits and the bitHuman account has {max(left, 0):,.0f} "
        f"available{queued}. Top up the bitHuman account or choose a cheaper model. Nothing "
        "was billed.",
        field="model",
        code="insufficient_credits",
    )
