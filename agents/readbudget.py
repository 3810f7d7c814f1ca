"""The Read budget of an organization's bitHuman account for one-off reads (pages, the import,
the sync, live sessions, transcripts, usage and credits): the same bucket and Retry-After
deferral as the poller (agents.ratelimit), one token per request, so all the portal's reads of
one account together stay within its plan.

The budget is the account's (`account_of`: ratelimit.budget_key, its user_id once known), shared
by every organization and secret on it, as bitHuman counts (api/rate-limits.md).
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from agents import ratelimit
from portal.bithuman import errors as bh_errors
from portal.errors import RateLimited
from portal.models import BithumanConnection

logger = logging.getLogger(__name__)

# Seconds to stay away from an account that answered 429 without a Retry-After.
DEFAULT_RETRY_AFTER = 30.0


def account_of(connection: BithumanConnection) -> str:
    """The budget's key for the connection's current account."""
    return ratelimit.budget_key(connection.api_secret)


def read_take(*, key: str) -> bool:
    """One read token for the account: False while a 429 defers the account or its bucket is
    empty. Also False while Redis, which keeps the budget, is unreachable: a page then goes
    without the figures rather than failing."""
    try:
        if ratelimit.account_deferral_remaining(key=key) > 0:
            return False
        per_minute = ratelimit.read_limit(key=key)
        return ratelimit.tokens_take(key=key, wanted=1, per_minute=per_minute) > 0
    except RedisError as error:
        logger.warning("Read budget unknown (Redis unreachable): %s", error)
        return False


def read_require(*, key: str) -> None:
    """`read_take`, or RateLimited (a clear "try again shortly") for a page or an API call."""
    if not read_take(key=key):
        try:
            waited = ratelimit.account_deferral_remaining(key=key)
        except RedisError:
            waited = 0.0
        raise RateLimited(
            "The bitHuman account's read budget is used up for the moment (the portal's status "
            "checks share it). Try again in a minute.",
            retry_after=max(waited, 5.0),
        )


def rate_limited_record(*, key: str, error: bh_errors.BithumanError, default: float = 0) -> None:
    """bitHuman said 429: nothing more goes to the account until its Retry-After has passed
    (`default`, else DEFAULT_RETRY_AFTER, without one). Other errors change nothing."""
    if isinstance(error, bh_errors.RateLimitedError):
        ratelimit.account_defer(
            key=key, seconds=error.retry_after or default or DEFAULT_RETRY_AFTER
        )
