"""The Generate queue: submissions that bitHuman's Generate rate limit answered 429 wait their
turn instead of failing (api/rate-limits.md: Free allows 4 generations a minute).

A 429 is not a failed attempt: the agent stays `submitting`, its `queued_until` says when to send
it again, and the pages show it as "queued" with its place in line. The line is the bitHuman
account's (every organization whose secret is on the same account shares its Generate budget,
agents.budgets), first come, first served: the place is the number of older agents of those
organizations still submitting. Each
queued agent is given its own slot of the plan's refill (60 s / the Generate limit) after the time
bitHuman named, so a burst does not come back all at once to be refused again.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.db.models import F, Q, QuerySet
from django.utils import timezone

from agents import ratelimit
from agents.models import Agent, AgentStatus
from portal.bithuman.errors import RateLimitedError
from portal.models import BithumanConnection

# Without any hint from bitHuman (no Retry-After, no reset, no limit): the Free plan's refill.
DEFAULT_SLOT_SECONDS = 15.0
# Never wait longer than this for one turn (a bad header must not park an agent for days).
MAX_WAIT_SECONDS = 15 * 60.0


def _submitting() -> QuerySet[Agent]:
    return Agent.objects.filter(status=AgentStatus.SUBMITTING, archived_at__isnull=True)


def _line_organizations(agent: Agent) -> list[int]:
    """The organizations whose submissions share `agent`'s line: those on its bitHuman account
    (as far as the portal knows it: ratelimit.budget_key), its own at least."""
    others = set(_submitting().values_list("organization_id", flat=True)) - {agent.organization_id}
    if not others:
        return [agent.organization_id]
    connections = {
        c.organization_id: c
        for c in BithumanConnection.objects.filter(
            organization_id__in=[agent.organization_id, *others]
        )
    }
    own = connections.get(agent.organization_id)
    if own is None or not own.api_secret:
        return [agent.organization_id]
    key = ratelimit.budget_key(own.api_secret)
    return [agent.organization_id] + [
        org_id
        for org_id in others
        if (c := connections.get(org_id)) is not None
        and c.api_secret
        and ratelimit.budget_key(c.api_secret) == key
    ]


def _ahead_of(agent: Agent) -> int:
    """How many submissions are ahead of `agent` in its account's line."""
    return (
        _submitting()
        .filter(organization_id__in=_line_organizations(agent))
        .filter(
            Q(created_at__lt=agent.created_at) | Q(created_at=agent.created_at, pk__lt=agent.pk)
        )
        .count()
    )


def wait_seconds(*, error: RateLimitedError, ahead: int) -> float:
    """When to send again: bitHuman's Retry-After (or its reset time) plus one refill slot per
    agent ahead in line."""
    slot = 60.0 / error.limit if error.limit else None
    first = error.retry_after
    if first is None and error.reset_at is not None:
        # The bucket is full at reset; one token comes back one slot after it started to refill.
        first = max(0.0, min(error.reset_at - time.time(), slot or DEFAULT_SLOT_SECONDS))
    if first is None:
        first = slot or DEFAULT_SLOT_SECONDS
    step = slot or max(first, 1.0)
    return min(first + ahead * step, MAX_WAIT_SECONDS)


def submission_queue(*, agent: Agent, error: RateLimitedError) -> float:
    """Put a submission bitHuman answered 429 back in line: the attempt does not count (the
    outbox counted it before sending), `queued_until` says when its turn comes. Returns the
    seconds until then."""
    seconds = wait_seconds(error=error, ahead=_ahead_of(agent))
    until = timezone.now() + timedelta(seconds=seconds)
    Agent.objects.filter(pk=agent.pk, status=AgentStatus.SUBMITTING).update(
        queued_until=until, submit_attempts=F("submit_attempts") - 1, updated_at=timezone.now()
    )
    agent.queued_until = until
    return seconds


def queue_position(agent: Agent) -> int | None:
    """1 for the next in line; None when the agent is not queued."""
    if agent.status != AgentStatus.SUBMITTING or agent.queued_until is None:
        return None
    return _ahead_of(agent) + 1
