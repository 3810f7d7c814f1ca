"""Credits as api/billing.md documents them, from what happened in the sandbox.

- The balance (`GET /v2/credit-summaries`, `GET /v1/me`'s `credit_balance`) is the account's
  credits (creation charges are taken, and failed creations refunded, when they happen) less
  the live minutes its rooms have run at the model's cloud rate (runtime.py's session credits).
- `GET /v1/usage` lists the metered events, newest first: one `usage_agent_generation_*` row per
  charged creation, a `credit_refund_…` row (positive, as bitHuman records them) for a refunded
  one, one `bithuman-serve` row per room that ran at least a minute's credits.
- `minutes_estimate` floor-divides the balance by each serving mode's rate (zero in the
  suspension grace window below 0).

The events are derived from the account's agents and rooms, so they cannot drift from them; an
agent deleted in the sandbox takes its rows with it (bitHuman keeps them: a known difference).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sandbox import runtime
from sandbox.errors import invalid
from sandbox.models import SandboxAccount, SandboxAgent, SandboxRoom
from sandbox.payloads import iso

# api/billing.md "minutes_estimate": the key and its credits per minute.
MINUTE_RATES: dict[str, float] = {
    "essence_2_cloud": 4,
    "essence_2_self_hosted": 2,
    "essence_2_max_cloud": 8,
    "essence_2_max_self_hosted": 4,
    "expression_2_cloud": 4,
    "expression_2_self_hosted": 2,
    "essence_1_cloud": 2,
    "essence_1_self_hosted": 1,
    "expression_1_cloud": 4,
    "expression_1_self_hosted": 2,
    "voice_chat": 10,
    "camera_chat": 30,
    # First-generation aliases (the docs' caution: not the Essence 2 rate).
    "essence_cloud": 2,
    "essence_self_hosted": 1,
    "expression_cloud": 4,
    "expression_self_hosted": 2,
}
SUSPENSION_FLOOR = -11
_EVENTS = uuid.UUID("6b1f0f1e-2f55-4d7e-9a55-3c1f6a1b7e01")


def session_credits(*, account: SandboxAccount, now: datetime | None = None) -> int:
    """Credits the account's rooms have burnt so far (each at its model's cloud rate)."""
    now = now or timezone.now()
    rooms = SandboxRoom.objects.filter(account=account).select_related("agent")
    return sum(runtime.session_data(room, now)["credits"] for room in rooms)


def balance(*, account: SandboxAccount, now: datetime | None = None) -> int:
    """What the account can spend now: its credits less the live minutes it has used."""
    return max(account.credits - session_credits(account=account, now=now), SUSPENSION_FLOOR)


def credit_summary(*, account: SandboxAccount) -> dict[str, Any]:
    """`data` of GET /v2/credit-summaries."""
    left = balance(account=account)
    usable = max(left, 0)
    return {
        "user_id": str(account.public_id),
        "balance": float(left),
        "plan_credits": float(left),
        "topup_credits": 0.0,
        "is_enterprise": account.plan == "enterprise",
        "minutes_estimate": {key: math.floor(usable / rate) for key, rate in MINUTE_RATES.items()},
        "isEnterprisePlanUser": account.plan == "enterprise",
    }


@dataclass(frozen=True)
class UsageQuery:
    limit: int
    offset: int
    start: datetime | None
    end: datetime | None
    agent_code: str | None


def moment_parse(value: str | None, name: str) -> datetime | None:
    """An ISO-8601 query parameter (a `Z` suffix welcome); 400 when it is not one."""
    if not value:
        return None
    try:
        moment = parse_datetime(value.strip().replace(" ", "+"))
    except ValueError:
        moment = None
    if moment is None:
        raise invalid(f"Query parameter '{name}' must be an ISO-8601 timestamp")
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    return moment


def _engine_code(model: str) -> str:
    return model.replace("-", "_")


def _event(**fields: Any) -> dict[str, Any]:
    return {
        "app": "imaginex",
        "frames_rendered": None,
        "room_name": None,
        "start_time": None,
        "end_time": None,
        **fields,
    }


def _events(account: SandboxAccount, now: datetime) -> list[tuple[datetime, dict[str, Any]]]:
    events: list[tuple[datetime, dict[str, Any]]] = []
    charged = SandboxAgent.objects.filter(account=account, cost__gt=0)
    for agent in charged:
        code = f"usage_agent_generation_{_engine_code(agent.model)}"
        events.append(
            (
                agent.created_at,
                _event(
                    id=str(uuid.uuid5(_EVENTS, f"charge:{agent.pk}")),
                    activity_type="agent-generation",
                    pricing_code=code,
                    agent_code=agent.code,
                    credits_change=agent.cost,
                    created_at=iso(agent.created_at),
                ),
            )
        )
        if agent.refunded:
            when = agent.finished_at or agent.updated_at
            events.append(
                (
                    when,
                    _event(
                        id=str(uuid.uuid5(_EVENTS, f"refund:{agent.pk}")),
                        activity_type="agent-generation",
                        pricing_code="credit_refund_" + code,
                        agent_code=agent.code,
                        credits_change=agent.cost,
                        created_at=iso(when),
                    ),
                )
            )
    for room in SandboxRoom.objects.filter(account=account).select_related("agent"):
        session = runtime.session_data(room, now)
        if session["credits"] <= 0:
            continue
        ended = room.ended_at or (now if room.expires_at > now else room.last_seen_at)
        events.append(
            (
                room.created_at,
                _event(
                    id=str(uuid.uuid5(_EVENTS, f"room:{room.session_id}")),
                    activity_type="bithuman-serve",
                    pricing_code=f"usage_{_engine_code(room.agent.model)}_model_cloud",
                    agent_code=room.agent.code,
                    credits_change=session["credits"],
                    room_name=room.name,
                    start_time=iso(room.created_at),
                    end_time=iso(ended),
                    created_at=iso(room.created_at),
                ),
            )
        )
    return events


def usage_page(*, account: SandboxAccount, query: UsageQuery) -> tuple[list[dict[str, Any]], int]:
    """A page of GET /v1/usage (newest first) and the number of matching events."""
    now = timezone.now()
    events = [
        (moment, event)
        for moment, event in _events(account, now)
        if (query.start is None or moment >= query.start)
        and (query.end is None or moment <= query.end)
        and (not query.agent_code or event["agent_code"] == query.agent_code)
    ]
    events.sort(key=lambda pair: (pair[0], pair[1]["id"]), reverse=True)
    page = [event for _moment, event in events[query.offset : query.offset + query.limit]]
    return page, len(events)
