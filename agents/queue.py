"""The Generate queue: submissions that bitHuman's Generate rate limit answered 429 wait their
turn instead of failing (api/rate-limits.md: Free allows 4 generations a minute).

A 429 is not a failed attempt: the agent stays `submitting`, its `queued_until` says when to send
it again, and the pages show it as "queued" with its place in line. The place is the number of
the organization's older agents still submitting (the line is first come, first served); each
queued agent is given its own slot of the plan's refill (60 s / the Generate limit) after the time
bitHuman named, so a burst does not come back all at once to be refused again.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.db.models import F, Q
from django.utils import timezone

from agents.models import Agent, AgentStatus
from portal.bithuman.errors import RateLimitedError

# Without any hint from bitHuman (no Retry-After, no reset, no limit): the Free plan's refill.
DEFAULT_SLOT_SECONDS = 15.0
# Never wait longer than this for one turn (a bad header must not park an agent for days).
MAX_WAIT_SECONDS = 15 * 60.0


def _ahead_of(agent: Agent) -> int:
    """How many of the organization's agents are ahead of `agent` in the submission line."""
    return (
        Agent.objects.filter(organization_id=agent.organization_id, status=AgentStatus.SUBMITTING)
        .filter(archived_at__isnull=True)
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
