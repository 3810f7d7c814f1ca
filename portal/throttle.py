"""Fixed-window counters in the cache (Redis in production) for actions that send email:
invitations, their resends, sign-up confirmations. A limit is checked and counted in one step."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.core.cache import cache

from portal.errors import RateLimited


@dataclass(frozen=True)
class Limit:
    name: str  # part of the cache key, e.g. "invite:user"
    count: int  # allowed per window
    window: int  # seconds


def _key(limit: Limit, subject: str, now: float) -> str:
    return f"throttle:{limit.name}:{subject}:{int(now // limit.window)}"


def retry_after(limit: Limit, subject: str) -> int:
    """Seconds until `subject` may act again under `limit`, or 0 when it may act now."""
    now = time.time()
    used = int(cache.get(_key(limit, subject, now)) or 0)
    if used < limit.count:
        return 0
    return max(1, math.ceil(limit.window - now % limit.window))


def hit(limit: Limit, subject: str) -> None:
    """Count one action of `subject`."""
    now = time.time()
    key = _key(limit, subject, now)
    cache.add(key, 0, timeout=limit.window + 60)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=limit.window + 60)


def wait_words(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    if minutes >= 90:
        return f"{math.ceil(minutes / 60)} hours"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def require(checks: list[tuple[Limit, str, str]], *, field: str | None = None) -> None:
    """Raise an ApplicationError naming the wait when any (limit, subject, message) is spent;
    otherwise count one action against each."""
    for limit, subject, message in checks:
        wait = retry_after(limit, subject)
        if wait:
            raise RateLimited(
                f"{message} Try again in {wait_words(wait)}.", field=field, retry_after=wait
            )
    for limit, subject, _message in checks:
        hit(limit, subject)
