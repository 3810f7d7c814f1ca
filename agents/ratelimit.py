"""Read budgets per bitHuman account, shared by every worker: a token bucket and Retry-After.

bitHuman limits each account (not each API key user) with a token bucket per kind of request;
the poller's GETs spend the plan's Read bucket (NOTES.md: 120 a minute on Free, up to 2880 on
Enterprise, burst = the per-minute limit). Every poller process takes tokens from one bucket per
account before it sends, so all of them together stay under the plan, and a 429's Retry-After
defers the whole account, for every process, until it has passed.

- Accounts are named by bitHuman's `user_id` once known (`budget_key`, portal.accountkeys):
  every secret and organization of one account shares its buckets, as bitHuman counts them.
  Before that, by a hash of the API secret (`account_key`). The secret itself never reaches
  the cache, keys or logs.
- With the Redis cache, each operation is one small Lua script: atomic across processes and
  timed by the Redis server's clock (workers' clocks may disagree). `reads_take` answers a
  poller batch's accounts (deferral, then tokens) in one script call, however many they are.
  With any other cache, a fallback keeps the state in the cache and serializes access with a
  database lock (a PostgreSQL advisory lock, or SQLite's immediate write transaction) plus a
  process lock.
- The plan is learned from GET /v1/me (by the poller) and remembered for an hour; until it is
  known the account gets the Free limit, the smallest one.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection, transaction

from portal import accountkeys
from portal.bithuman.types import Account

__all__ = [
    "DEFAULT_PLAN",
    "GENERATE_LIMITS",
    "READ_LIMITS",
    "ReadGrant",
    "account_defer",
    "account_deferral_remaining",
    "account_key",
    "account_learn",
    "account_learn_user",
    "budget_key",
    "deferral_clear",
    "lock_acquire",
    "lock_release",
    "plan_from_names",
    "plan_lookup_claim",
    "plan_remember",
    "read_limit",
    "read_limits_known",
    "reads_take",
    "tokens_take",
]

# Read requests per minute (= burst) per plan, from bitHuman's published limits (NOTES.md).
READ_LIMITS: Final = {
    "free": 120,
    "creator": 240,
    "pro": 720,
    "business": 1440,
    "enterprise": 2880,
}
# Generate requests per minute (= burst) per plan (api/rate-limits.md).
GENERATE_LIMITS: Final = {
    "free": 4,
    "creator": 10,
    "pro": 30,
    "business": 60,
    "enterprise": 120,
}
DEFAULT_PLAN: Final = "free"
PLAN_CACHE_SECONDS: Final = 3600
# After a failed /v1/me, wait this long before asking again (Free limits meanwhile).
PLAN_RETRY_SECONDS: Final = 300
_PREFIX: Final = "bithuman:ratelimit"


def account_key(api_secret: str) -> str:
    """A stable, non-reversible name for one secret (the fallback of `budget_key`)."""
    return accountkeys.secret_key(api_secret)


def budget_key(api_secret: str) -> str:
    """The name budgets use for the secret's account: its user_id's once /v1/me has told it
    (shared by every secret of the account), else the secret's own (`account_key`)."""
    return accountkeys.budget_key(api_secret)


def _poll_share() -> float:
    # Headroom for the portal's other reads on the same account (settings page, agent pages).
    return min(max(float(getattr(settings, "AGENT_POLL_READ_SHARE", 0.8)), 0.01), 1.0)


# --- Plans --------------------------------------------------------------------------------------


def plan_from_names(*names: str | None) -> str | None:
    """Our plan name for what /v1/me says (`plan` "pro", `plan_code` "membership_pro", ...)."""
    for name in names:
        lowered = (name or "").strip().lower()
        for plan in READ_LIMITS:
            if lowered == plan or lowered.endswith(("_" + plan, "-" + plan, " " + plan)):
                return plan
    return None


def _plan_cache_key(key: str) -> str:
    return f"{_PREFIX}:plan:{key}"


def plan_remember(*, key: str, plan: str) -> None:
    cache.set(_plan_cache_key(key), plan, PLAN_CACHE_SECONDS)


def account_learn(*, key: str, api_secret: str, account: Account) -> None:
    """What /v1/me said: the plan, remembered under `key` and under the account's own name,
    and which account the secret belongs to (so its budget is the account's from now on)."""
    plan = plan_from_names(account.plan, account.plan_code) or DEFAULT_PLAN
    if account.user_id:
        account_learn_user(api_secret=api_secret, user_id=account.user_id)
        plan_remember(key=accountkeys.user_key(account.user_id), plan=plan)
    plan_remember(key=key, plan=plan)


def account_learn_user(*, api_secret: str, user_id: str) -> None:
    """The secret belongs to the account `user_id` (from /v1/me or /v2/credit-summaries)."""
    if accountkeys.user_of(api_secret) == user_id:
        return
    # What the secret spent so far counts against the account: a fresh bucket would grant a
    # second burst the moment the name changes.
    _bucket_inherit(source=account_key(api_secret), target=accountkeys.user_key(user_id))
    accountkeys.remember(api_secret=api_secret, user_id=user_id)


def plan_known(*, key: str) -> str | None:
    found = cache.get(_plan_cache_key(key))
    return str(found) if found else None


def plan_lookup_claim(*, key: str) -> bool:
    """Whether this caller should ask /v1/me now: one caller per account per retry period."""
    if cache.get(_plan_cache_key(key)) is not None:
        return False
    return bool(cache.add(f"{_PREFIX}:plan-lookup:{key}", 1, PLAN_RETRY_SECONDS))


def _plan_limit(plan: str | None) -> int:
    limit = READ_LIMITS.get(plan or DEFAULT_PLAN, READ_LIMITS[DEFAULT_PLAN])
    return max(1, math.floor(limit * _poll_share()))


def read_limit(*, key: str) -> int:
    """The poller's reads per minute for the account: its plan's Read limit times the share
    (AGENT_POLL_READ_SHARE), Free until the plan is known."""
    return _plan_limit(cache.get(_plan_cache_key(key)))


def read_limits_known(*, keys: Iterable[str]) -> dict[str, int]:
    """`read_limit` of each account whose plan is known, in one cache round trip (the others
    are left out: the caller learns their plan first)."""
    names = {_plan_cache_key(key): key for key in keys}
    found = cache.get_many(list(names))
    return {names[name]: _plan_limit(plan) for name, plan in found.items() if plan is not None}


# --- Redis scripts ------------------------------------------------------------------------------

_NOW_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# take(bucket hash key, capacity, refill per second, wanted): the tokens granted.
_TAKE_FUNCTION_LUA: Final = """
local function take(bucket, capacity, rate, wanted)
  local state = redis.call('HMGET', bucket, 'tokens', 'at')
  local tokens = tonumber(state[1])
  local at = tonumber(state[2])
  if tokens == nil or at == nil then
    tokens = capacity
    at = now
  end
  tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
  local granted = math.max(0, math.min(wanted, math.floor(tokens)))
  tokens = tokens - granted
  redis.call('HSET', bucket, 'tokens', string.format('%.6f', tokens), 'at',
    string.format('%.6f', now))
  redis.call('EXPIRE', bucket, math.ceil(capacity / rate) + 60)
  return granted
end
"""

# KEYS[1] bucket hash; ARGV capacity, refill per second, wanted. Returns the tokens granted.
_TAKE_LUA: Final = (
    _NOW_LUA
    + _TAKE_FUNCTION_LUA
    + """
return take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
"""
)

# Many accounts at once: KEYS bucket and deferral of each account, in pairs; ARGV capacity,
# refill per second and wanted of each. Returns per account the tokens granted and the seconds
# of deferral left (a string): a deferred account is granted nothing.
_READS_TAKE_LUA: Final = (
    _NOW_LUA
    + _TAKE_FUNCTION_LUA
    + """
local answer = {}
for i = 1, #KEYS / 2 do
  local untl = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  local granted = 0
  if untl <= now then
    granted = take(KEYS[2 * i - 1], tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]),
      tonumber(ARGV[3 * i]))
  end
  answer[2 * i - 1] = granted
  answer[2 * i] = string.format('%.6f', math.max(0, untl - now))
end
return answer
"""
)

# KEYS[1] deferral; ARGV seconds. Only ever extends. Returns the remaining seconds (a string:
# Lua numbers come back as integers).
_DEFER_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local untl = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > current then
  redis.call('SET', KEYS[1], string.format('%.6f', untl), 'PX',
    math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
  current = untl
end
return string.format('%.6f', current - now)
"""

_REMAINING_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local untl = tonumber(redis.call('GET', KEYS[1]) or '0')
return string.format('%.6f', math.max(0, untl - now))
"""

_RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _redis() -> Any | None:
    """The redis-py client behind Django's Redis cache, or None for any other cache backend."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return backend._cache.get_client(write=True)
    return None


def _key(name: str) -> str:
    return f"{_PREFIX}:{name}"


def _raw_key(name: str) -> str:
    # For direct Redis calls: Django's key function adds KEY_PREFIX and VERSION, as the cache
    # API would, so several sites can share one Redis.
    return cache.make_key(_key(name))


# --- Fallback: cache state under a database lock -----------------------------------------------

_process_lock = threading.Lock()


@contextmanager
def _fallback_locked(name: str) -> Iterator[None]:
    """Serialize read-modify-write of one cache entry across threads and processes."""
    with _process_lock, transaction.atomic():
        if connection.vendor == "postgresql":
            lock_id = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])
        # SQLite: settings open every transaction IMMEDIATE, i.e. with the database write lock.
        yield


# --- Token bucket -------------------------------------------------------------------------------


def bucket_capacity(per_minute: int) -> int:
    """The burst: a quarter of the per-minute allowance."""
    return max(1, per_minute // 4)


def tokens_take(*, key: str, wanted: int, per_minute: int) -> int:
    """Take up to `wanted` read tokens from the account's bucket; return how many were granted.

    The bucket refills continuously at `per_minute / 60` a second and holds at most
    `bucket_capacity(per_minute)`, so ANY 60-second window sees at most 1.25 x `per_minute`:
    with the default share of 0.8 that is exactly the plan's limit (a bucket as big as the
    per-minute limit would allow nearly twice the limit in the first minute).
    """
    if wanted <= 0:
        return 0
    capacity = bucket_capacity(per_minute)
    rate = max(1, per_minute) / 60.0
    bucket = f"bucket:{key}"
    client = _redis()
    if client is not None:
        granted = client.eval(_TAKE_LUA, 1, _raw_key(bucket), capacity, rate, wanted)
        return int(granted)
    with _fallback_locked(bucket):
        now = time.time()
        state = cache.get(_key(bucket)) or {"tokens": float(capacity), "at": now}
        tokens = min(float(capacity), state["tokens"] + max(0.0, now - state["at"]) * rate)
        granted = max(0, min(wanted, math.floor(tokens)))
        cache.set(
            _key(bucket),
            {"tokens": tokens - granted, "at": now},
            math.ceil(capacity / rate) + 60,
        )
        return granted


@dataclass(frozen=True)
class ReadGrant:
    """An account's share of a batch: the reads granted, or (when > 0) the seconds it is still
    deferred by a Retry-After, in which case nothing is granted."""

    granted: int
    deferred_for: float = 0.0


def reads_take(*, wants: Sequence[tuple[str, int, int]]) -> list[ReadGrant]:
    """For each account `(key, wanted, per_minute)`: its deferral left, or else up to `wanted`
    tokens from its bucket (`tokens_take`). With Redis one script call answers a whole batch,
    whatever its number of accounts."""
    client = _redis()
    if client is None:
        grants = []
        for key, wanted, per_minute in wants:
            remaining = account_deferral_remaining(key=key)
            if remaining > 0:
                grants.append(ReadGrant(granted=0, deferred_for=remaining))
            else:
                granted = tokens_take(key=key, wanted=wanted, per_minute=per_minute)
                grants.append(ReadGrant(granted=granted))
        return grants
    if not wants:
        return []
    keys: list[str] = []
    args: list[float | int] = []
    for key, wanted, per_minute in wants:
        keys += [_raw_key(f"bucket:{key}"), _raw_key(f"defer:{key}")]
        args += [bucket_capacity(per_minute), max(1, per_minute) / 60.0, max(0, wanted)]
    answer = client.eval(_READS_TAKE_LUA, len(keys), *keys, *args)
    return [
        ReadGrant(granted=int(answer[2 * i]), deferred_for=float(answer[2 * i + 1]))
        for i in range(len(wants))
    ]


# KEYS[1] source bucket, KEYS[2] target bucket; ARGV[1] the source's capacity. A target with no
# state yet starts as the source stands; a target another secret of the account started already
# is charged what the source spent (its capacity less its tokens).
_INHERIT_LUA: Final = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
if state[1] == false or state[2] == false then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], 'tokens', state[1], 'at', state[2])
  redis.call('PEXPIRE', KEYS[2], math.max(redis.call('PTTL', KEYS[1]), 1000))
  return 1
end
local spent = math.max(0, tonumber(ARGV[1]) - tonumber(state[1]))
redis.call('HINCRBYFLOAT', KEYS[2], 'tokens', -spent)
return 2
"""


def _bucket_inherit(*, source: str, target: str) -> None:
    """Carry what the secret `source` spent over to its account's bucket `target`."""
    capacity = bucket_capacity(read_limit(key=source))
    client = _redis()
    if client is not None:
        client.eval(
            _INHERIT_LUA, 2, _raw_key(f"bucket:{source}"), _raw_key(f"bucket:{target}"), capacity
        )
        return
    with _fallback_locked(f"bucket:{target}"):
        state = cache.get(_key(f"bucket:{source}"))
        if state is None:
            return
        current = cache.get(_key(f"bucket:{target}"))
        if current is None:
            cache.set(_key(f"bucket:{target}"), state, 3600)
        else:
            spent = max(0.0, capacity - state["tokens"])
            cache.set(
                _key(f"bucket:{target}"), {**current, "tokens": current["tokens"] - spent}, 3600
            )


# --- Deferral (Retry-After) ---------------------------------------------------------------------


def account_defer(*, key: str, seconds: float) -> float:
    """Send nothing to the account for `seconds` (never shortens a longer deferral).

    Returns the seconds the account is now deferred for.
    """
    seconds = max(0.0, float(seconds))
    name = f"defer:{key}"
    client = _redis()
    if client is not None:
        return float(client.eval(_DEFER_LUA, 1, _raw_key(name), seconds))
    with _fallback_locked(name):
        now = time.time()
        until = max(float(cache.get(_key(name)) or 0.0), now + seconds)
        cache.set(_key(name), until, math.ceil(until - now) + 1)
        return until - now


def deferral_clear(*, key: str) -> None:
    """End the account's deferral now."""
    client = _redis()
    if client is not None:
        client.delete(_raw_key(f"defer:{key}"))
    else:
        cache.delete(_key(f"defer:{key}"))


def account_deferral_remaining(*, key: str) -> float:
    """Seconds until the account may be called again (0 when it may be called now)."""
    name = f"defer:{key}"
    client = _redis()
    if client is not None:
        return float(client.eval(_REMAINING_LUA, 1, _raw_key(name)))
    until = float(cache.get(_key(name)) or 0.0)
    return max(0.0, until - time.time())


# --- A lock with an owner -----------------------------------------------------------------------


def lock_acquire(*, name: str, seconds: float) -> str | None:
    """Take a named lock for at most `seconds`; return its token, or None if someone holds it."""
    token = uuid.uuid4().hex
    client = _redis()
    if client is not None:
        taken = client.set(_raw_key(f"lock:{name}"), token, nx=True, px=math.ceil(seconds * 1000))
        return token if taken else None
    return token if cache.add(_key(f"lock:{name}"), token, math.ceil(seconds)) else None


def lock_release(*, name: str, token: str) -> None:
    """Release the lock only if it is still ours (it may have expired and been taken since)."""
    client = _redis()
    if client is not None:
        client.eval(_RELEASE_LUA, 1, _raw_key(f"lock:{name}"), token)
        return
    if cache.get(_key(f"lock:{name}")) == token:
        cache.delete(_key(f"lock:{name}"))
