"""The organization home's numbers and charts' data: it reads every app (agents, sessions,
members, the audit of spend), so it sits with the interfaces, above all of them. Every
aggregate is computed in the database, grouped by day or model."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    F,
    FloatField,
    Func,
    Q,
    Sum,
)
from django.db.models.functions import Ceil, Coalesce, Greatest, Now, TruncDate
from django.utils import timezone

from agents.models import Agent, AgentStatus
from organizations.selectors import invitation_list_open
from portal.models import Membership, Organization
from sessions import selectors as session_selectors
from sessions.models import AgentSession, EventKind, SessionEvent


def organization_counts(*, org: Organization) -> dict[str, int]:
    return {
        "members": Membership.objects.for_org(org).count(),
        "invitations": invitation_list_open(org=org).count(),
        "agents": Agent.objects.for_org(org).active().count(),
        "sessions": session_selectors.live_session_count(org=org),
    }


# --- The dashboard ------------------------------------------------------------------------------

RANGES = (7, 30, 90)

# bitHuman's published prices, in credits ($1 = 100 credits): a one-time creation per model,
# and talking video per started minute (at least one) by the agent's model.
GENERATION_CREDITS = {"essence-1": 250, "expression-1": 250, "essence-2": 500, "expression-2": 2000}
SESSION_CREDITS_PER_MINUTE = {
    "essence-1": 2,
    "expression-1": 4,
    "expression-2": 4,
    "essence-2": 4,
}


class SecondsBetween(Func):
    """end - start in seconds, as a float, on PostgreSQL and SQLite."""

    output_field = FloatField()
    arg_joiner = " - "
    template = "EXTRACT(EPOCH FROM (%(expressions)s))"

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler,
            connection,
            template="((julianday(%(expressions)s)) * 86400.0)",
            arg_joiner=") - julianday(",
            **extra,
        )


class PercentileCont(Aggregate):
    """PostgreSQL's percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=float(fraction), **extra)


@dataclass
class DayPoint:
    day: date
    values: dict[str, float] = field(default_factory=dict)


def _days(since: date, until: date) -> list[date]:
    return [since + timedelta(days=n) for n in range((until - since).days + 1)]


def _by_day(rows: Iterable[Any], days: list[date], keys: list[str]) -> list[DayPoint]:
    found = {row["day"]: row for row in rows}
    return [
        DayPoint(day=d, values={k: float(found.get(d, {}).get(k) or 0) for k in keys}) for d in days
    ]


@dataclass
class Dashboard:
    days: int
    since: datetime
    agents_per_day: list[DayPoint]
    generation_times: list[dict[str, Any]]  # model, count, p50, p90 (seconds)
    sessions_per_day: list[DayPoint]
    in_flight: list[Any]
    credits_per_day: list[DayPoint]
    totals: dict[str, float]


def _generation_times(org: Organization, since: datetime) -> list[dict[str, Any]]:

    ready = Agent.objects.for_org(org).filter(
        status=AgentStatus.READY, ready_at__gte=since, ready_at__isnull=False
    )
    seconds = SecondsBetween(F("ready_at"), Coalesce(F("submitted_at"), F("created_at")))
    if connection.vendor == "postgresql":
        rows = (
            ready.values("model")
            .annotate(
                count=Count("id"),
                p50=PercentileCont(seconds, 0.5),
                p90=PercentileCont(seconds, 0.9),
            )
            .order_by("model")
        )
        return [dict(row) for row in rows]
    # SQLite has no percentile aggregate: a Python fallback (development databases only).
    durations: dict[str, list[float]] = {}
    for model, value in ready.annotate(s=seconds).values_list("model", "s"):
        durations.setdefault(model, []).append(float(value))
    result = []
    for model in sorted(durations):
        values = sorted(durations[model])
        if len(values) == 1:
            p50 = p90 = values[0]
        else:
            cuts = statistics.quantiles(values, n=10, method="inclusive")
            p50, p90 = statistics.median(values), cuts[8]
        result.append({"model": model, "count": len(values), "p50": p50, "p90": p90})
    return result


def dashboard_get(*, org: Organization, days: int) -> Dashboard:

    days = days if days in RANGES else 7
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    since = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    day_list = _days(first, today)

    agents = (
        Agent.objects.for_org(org)
        .filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            total=Count("id"),
            ready=Count("id", filter=Q(status=AgentStatus.READY)),
            failed=Count("id", filter=Q(status=AgentStatus.FAILED)),
        )
        .order_by("day")
    )
    agents_per_day = _by_day(agents, day_list, ["total", "ready", "failed"])

    sessions = (
        AgentSession.objects.for_org(org)
        .filter(started_at__gte=since)
        .annotate(day=TruncDate("started_at"))
        .values("day")
        .annotate(sessions=Count("id"))
        .order_by("day")
    )
    messages = (
        SessionEvent.objects.filter(
            session__organization=org,
            created_at__gte=since,
            kind__in=[EventKind.SPEAK, EventKind.CONTEXT],
        )
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(messages=Count("id"))
        .order_by("day")
    )
    merged: dict[date, dict[str, Any]] = {}
    for row in [*sessions, *messages]:
        merged.setdefault(row["day"], {"day": row["day"]}).update(row)
    sessions_per_day = _by_day(list(merged.values()), day_list, ["sessions", "messages"])

    # Credits: creations by model and day, and started session minutes by agent model and day.
    creations = (
        Agent.objects.for_org(org)
        .filter(created_at__gte=since)
        .exclude(status=AgentStatus.FAILED)  # bitHuman refunds failed generations
        .annotate(day=TruncDate("created_at"))
        .values("day", "model")
        .annotate(n=Count("id"))
    )
    minutes = Greatest(
        Ceil(SecondsBetween(Coalesce(F("ended_at"), Now()), F("started_at")) / 60.0), 1.0
    )
    session_minutes = (
        AgentSession.objects.for_org(org)
        .filter(started_at__gte=since)
        .annotate(day=TruncDate("started_at"))
        .values("day", "agent__model")
        .annotate(minutes=Sum(minutes))
    )
    credit_rows: dict[date, dict[str, Any]] = {}
    for row in creations:
        entry = credit_rows.setdefault(row["day"], {"day": row["day"]})
        cost = GENERATION_CREDITS.get(row["model"], 0) * row["n"]
        entry["generation"] = entry.get("generation", 0) + cost
    for row in session_minutes:
        entry = credit_rows.setdefault(row["day"], {"day": row["day"]})
        rate = SESSION_CREDITS_PER_MINUTE.get(row["agent__model"], 4)
        entry["sessions"] = entry.get("sessions", 0) + rate * float(row["minutes"] or 0)
    credits_per_day = _by_day(list(credit_rows.values()), day_list, ["generation", "sessions"])

    in_flight = list(Agent.objects.for_org(org).active().in_flight().order_by("created_at")[:10])
    totals = {
        "agents": sum(p.values["total"] for p in agents_per_day),
        "ready": sum(p.values["ready"] for p in agents_per_day),
        "failed": sum(p.values["failed"] for p in agents_per_day),
        "sessions": sum(p.values["sessions"] for p in sessions_per_day),
        "messages": sum(p.values["messages"] for p in sessions_per_day),
        "credits": sum(p.values["generation"] + p.values["sessions"] for p in credits_per_day),
    }
    return Dashboard(
        days=days,
        since=since,
        agents_per_day=agents_per_day,
        generation_times=_generation_times(org, since),
        sessions_per_day=sessions_per_day,
        in_flight=in_flight,
        credits_per_day=credits_per_day,
        totals=totals,
    )
