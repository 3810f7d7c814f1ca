"""The Redis cache, degraded rather than failing while Redis is unreachable.

The cache holds only what can be rebuilt or skipped (rate-limit counters, plan lookups, locks):
when Redis is down or times out, reads miss, writes are dropped, `add` takes nothing and `incr`
counts from zero, with a warning logged (at most every 10 s per process), so pages and API reads
keep working through a Redis restart instead of answering 500.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger(__name__)

_ERRORS = (redis.ConnectionError, redis.TimeoutError)
_LOG_EVERY = 10.0
_last_logged = 0.0


def _degraded(fallback: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: RedisCache, *args: Any, **kwargs: Any) -> Any:
            global _last_logged
            try:
                return method(self, *args, **kwargs)
            except _ERRORS as error:
                now = time.monotonic()
                if now - _last_logged >= _LOG_EVERY:
                    _last_logged = now
                    logger.warning("Cache unavailable, degrading (%s): %s", method.__name__, error)
                return fallback(*args, **kwargs)

        return wrapper

    return decorate


def _default(key: Any, default: Any = None, *args: Any, **kwargs: Any) -> Any:
    return default


def _delta(key: Any, delta: int = 1, *args: Any, **kwargs: Any) -> int:
    return delta


class ResilientRedisCache(RedisCache):
    get = _degraded(_default)(RedisCache.get)
    get_many = _degraded(lambda *a, **k: {})(RedisCache.get_many)
    has_key = _degraded(lambda *a, **k: False)(RedisCache.has_key)
    set = _degraded(lambda *a, **k: None)(RedisCache.set)
    set_many = _degraded(lambda data, *a, **k: list(data))(RedisCache.set_many)
    add = _degraded(lambda *a, **k: False)(RedisCache.add)
    touch = _degraded(lambda *a, **k: False)(RedisCache.touch)
    delete = _degraded(lambda *a, **k: False)(RedisCache.delete)
    delete_many = _degraded(lambda *a, **k: None)(RedisCache.delete_many)
    incr = _degraded(_delta)(RedisCache.incr)
    clear = _degraded(lambda *a, **k: False)(RedisCache.clear)
