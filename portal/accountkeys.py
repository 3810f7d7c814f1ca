"""Which bitHuman account a secret belongs to: the name budgets and per-account caches use.

bitHuman counts per account, not per secret (api/rate-limits.md: "every API secret on the same
account shares the same buckets"), and prices and balances are the account's. The account is
named by its `user_id`, which GET /v1/me and GET /v2/credit-summaries return; whoever reads one
of them calls `remember`, and the secret (by a hash: the secret itself never reaches the cache)
then maps to its account for USER_CACHE_SECONDS.

Until a secret has been seen answering with its user_id, `budget_key` names it by the secret's
own hash: a budget of its own, on the smallest (Free) limits until the plan is known. The poller
learns plan and user_id with its first /v1/me for a secret, and a submission asks /v1/me first
(agents.budgets), so that window is one request wide.
"""

from __future__ import annotations

import hashlib
from typing import Final

from django.core.cache import cache

__all__ = ["budget_key", "remember", "secret_key", "user_key", "user_of"]

USER_CACHE_SECONDS: Final = 30 * 24 * 3600
_PREFIX: Final = "bithuman:account-of"


def secret_key(api_secret: str) -> str:
    """A stable, non-reversible name for one secret (what budgets were keyed by before)."""
    return hashlib.sha256(b"bithuman-account:" + api_secret.encode()).hexdigest()[:32]


def user_key(user_id: str) -> str:
    """The name of the account `user_id` (bitHuman's, from /v1/me)."""
    return "u" + hashlib.sha256(b"bithuman-user:" + user_id.encode()).hexdigest()[:31]


def remember(*, api_secret: str, user_id: str | None) -> None:
    """Note that `api_secret` belongs to the account `user_id` (a no-op without one)."""
    if user_id:
        cache.set(f"{_PREFIX}:{secret_key(api_secret)}", user_id, USER_CACHE_SECONDS)


def user_of(api_secret: str) -> str | None:
    """The user_id of the secret's account, when it is known."""
    found = cache.get(f"{_PREFIX}:{secret_key(api_secret)}")
    return str(found) if found else None


def budget_key(api_secret: str) -> str:
    """The account's name when its user_id is known, else the secret's own (see above)."""
    user_id = user_of(api_secret)
    return user_key(user_id) if user_id else secret_key(api_secret)
