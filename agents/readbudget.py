"""The Read budget of an organization's bitHuman account for one-off reads (the import page,
the sync): the same bucket and Retry-After deferral as the poller (agents.ratelimit), one token
per request, so all the portal's reads of one account together stay within its plan."""

from __future__ import annotations

from agents import ratelimit
from portal.bithuman import errors as bh_errors
from portal.errors import RateLimited
from portal.models import BithumanConnection

# Seconds to stay away from an account that answered 429 without a Retry-After.
DEFAULT_RETRY_AFTER = 30.0


def account_of(connection: BithumanConnection) -> str:
    """The budget's key for the connection's current account."""
    return ratelimit.account_key(connection.api_secret)


def read_take(*, key: str) -> bool:
    """One read token for the account, or False when it is deferred or its budget is used up."""
    if ratelimit.account_deferral_remaining(key=key) > 0:
        return False
    return ratelimit.tokens_take(key=key, wanted=1, per_minute=ratelimit.read_limit(key=key)) == 1


def read_require(*, key: str) -> None:
    """`read_take`, or RateLimited (a clear "try again shortly") for a page or an API call."""
    if not read_take(key=key):
        waited = ratelimit.account_deferral_remaining(key=key)
        raise RateLimited(
            "The bitHuman account's read budget is used up for the moment (the portal's status "
            "checks share it). Try again in a minute.",
            retry_after=max(waited, 5.0),
        )


def rate_limited_record(*, key: str, error: bh_errors.RateLimitedError) -> None:
    """bitHuman said 429: nothing more goes to the account until its Retry-After has passed."""
    ratelimit.account_defer(key=key, seconds=error.retry_after or DEFAULT_RETRY_AFTER)
