"""The Generate budget of a bitHuman account, shared by every organization and secret on it.

bitHuman counts generations per account (api/rate-limits.md: Free allows 4 a minute, and every
secret of the account shares the bucket). The submission outbox (agents.services.agent_submit)
asks here before it sends:

- `submit_key` names the account (agents.ratelimit.budget_key). A secret whose account or plan
  is not known yet asks GET /v1/me once (a Read request; plan and user_id are then remembered);
  if that fails, the secret's own name is used, as before.
- `generate_wait`: while a 429's Retry-After (whichever organization of the account received it)
  has not passed, nothing is sent: the submission is queued for then (agents.queue), which does
  not count as a failed attempt.
- `generate_defer`: a 429 defers the account's generations for every organization on it.

Reads have their own deferral (the poller's); the two buckets are separate upstream too.
"""

from __future__ import annotations

import logging
import time

from agents import ratelimit
from portal.bithuman.client import BithumanClient
from portal.bithuman.errors import BithumanError, RateLimitedError
from portal.models import BithumanConnection

logger = logging.getLogger(__name__)

# Without a Retry-After or reset time: one slot of the Free plan's refill.
DEFAULT_DEFER_SECONDS = 15.0


def _generate_key(key: str) -> str:
    return f"generate:{key}"


def submit_key(*, connection: BithumanConnection, client: BithumanClient) -> str:
    """The budget name of the connection's account, learning it from /v1/me if need be."""
    secret = connection.api_secret
    key = ratelimit.budget_key(secret)
    if key != ratelimit.account_key(secret) and ratelimit.plan_known(key=key):
        return key  # the account and its plan are known (its Generate limit spaces the line)
    try:
        account = client.account_get()
    except BithumanError as error:
        logger.info("bitHuman /v1/me failed (budget per secret for now): %s", error)
        return key
    ratelimit.account_learn(key=key, api_secret=secret, account=account)
    return ratelimit.budget_key(secret)


def generate_wait(*, key: str) -> float:
    """Seconds until the account may be sent a generation (0: now)."""
    return ratelimit.account_deferral_remaining(key=_generate_key(key))


def generate_defer(*, key: str, error: RateLimitedError) -> float:
    """A 429 from the Generate bucket: hold every organization of the account until the time it
    named (Retry-After, else the reset time, else one Free slot)."""
    seconds = error.retry_after
    if seconds is None and error.reset_at is not None:
        seconds = max(0.0, error.reset_at - time.time())
    return ratelimit.account_defer(
        key=_generate_key(key), seconds=seconds if seconds is not None else DEFAULT_DEFER_SECONDS
    )


def generate_release(*, key: str) -> None:
    """Forget the account's Generate hold (its Retry-After has passed, or staff say so)."""
    ratelimit.deferral_clear(key=_generate_key(key))


def held(*, key: str, seconds: float) -> RateLimitedError:
    """What the queue needs to place a submission held back for `seconds` (not sent): the wait,
    and the plan's Generate limit (its slot spacing) when the plan is known."""
    error = RateLimitedError(
        code="RATE_LIMITED",
        message="The bitHuman account's generations are on hold until its budget refills.",
        retry_after=seconds,
    )
    plan = ratelimit.plan_known(key=key)
    if plan:
        error.limit = ratelimit.GENERATE_LIMITS.get(plan)
    return error
