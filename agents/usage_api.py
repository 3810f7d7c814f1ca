"""Usage and credits over REST: `GET /api/v1/usage` (scope `usage:read`), the Usage page's
figures (agents.usage)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from django.http import HttpRequest
from ninja import Query, Router, Schema
from pydantic import Field

from agents import usage
from portal.apisupport import scope_require
from portal.models import ApiScope

router = Router(tags=["usage"])


class UsageQuery(Schema):
    days: int = Field(default=30, description="The period: the last 7, 30 or 90 days.")


class ModelSpend(Schema):
    model: str = Field(description="The agent model (or `other`).")
    credits: float = Field(description="Credits spent on it by this organization's agents.")


class DaySpend(Schema):
    date: dt.date = Field(description="The day.")
    credits: float = Field(description="Credits spent that day by this organization's agents.")
    by_model: dict[str, float] = Field(description="The same, per model.")


class AgentSpendOut(Schema):
    id: str = Field(description="The agent's id in this portal.")
    code: str = Field(description="bitHuman's agent code.")
    name: str = Field(description="The agent's name.")
    model: str = Field(description="The agent's model.")
    archived: bool = Field(description="Whether the agent was deleted here since.")
    generation: float = Field(description="Credits its generation cost (net of refunds).")
    sessions: float = Field(description="Credits its live sessions cost.")
    total: float = Field(description="Generation and sessions together.")


class UsageOut(Schema):
    mode: Literal["test", "live"] = Field(
        description="`test`: the figures are the sandbox's own, not a real bitHuman account's."
    )
    days: int = Field(description="The period's length in days.")
    start: dt.date = Field(description="The period's first day.")
    end: dt.date = Field(description="The period's last day (today).")
    balance: float | None = Field(description="Credits left (the bitHuman account's), if known.")
    plan_credits: float | None = Field(description="Of the balance: the plan's credits.")
    topup_credits: float | None = Field(description="Of the balance: top-up credits.")
    minutes_estimate: dict[str, int] = Field(
        description="bitHuman's estimate of live minutes the balance buys, per serving mode."
    )
    daily_burn: float = Field(description="The account's average credits a day in the period.")
    runway_days: float | None = Field(
        description="Days the balance lasts at that rate (null without spend or balance)."
    )
    organization_spent: float = Field(description="Spent by this organization's agents.")
    account_spent: float = Field(
        description="Spent by the whole bitHuman account (other organizations' agents included)."
    )
    usage_available: bool = Field(description="False when bitHuman's usage could not be read.")
    truncated: bool = Field(description="True when the period had more events than were read.")
    by_model: list[ModelSpend] = Field(description="This organization's spend per model.")
    by_day: list[DaySpend] = Field(description="This organization's spend per day, oldest first.")
    by_agent: list[AgentSpendOut] = Field(
        description="This organization's agents that spent credits, the most first."
    )


@router.get("", response=UsageOut, summary="Usage and credits")
def usage_get(request: HttpRequest, query: Query[UsageQuery]) -> UsageOut:
    """The organization's spend by day, model and agent, and its bitHuman account's balance and
    runway. In Test mode the figures are the sandbox's."""
    scope_require(request, ApiScope.USAGE_READ)
    report = usage.usage_report(org=request.organization, days=query.days)  # type: ignore[attr-defined]
    summary = report.summary
    return UsageOut(
        mode="test" if report.test_mode else "live",
        days=report.days,
        start=report.start,
        end=report.end,
        balance=summary.balance if summary else None,
        plan_credits=summary.plan_credits if summary else None,
        topup_credits=summary.topup_credits if summary else None,
        minutes_estimate=dict(summary.minutes_estimate) if summary else {},
        daily_burn=round(report.daily_burn, 2),
        runway_days=round(report.runway_days, 1) if report.runway_days is not None else None,
        organization_spent=report.org_spent,
        account_spent=report.account_spent,
        usage_available=report.available,
        truncated=report.truncated,
        by_model=[ModelSpend(model=m, credits=c) for m, c in report.by_model.items()],
        by_day=[
            DaySpend(date=day, credits=sum(row.values()), by_model=row)
            for day, row in report.by_day
        ],
        by_agent=[
            AgentSpendOut(
                id=str(row.agent.public_id),
                code=row.agent.code,
                name=row.agent.name,
                model=row.agent.model,
                archived=row.agent.archived_at is not None,
                generation=row.generation,
                sessions=row.sessions,
                total=row.total,
            )
            for row in report.by_agent
        ],
    )
