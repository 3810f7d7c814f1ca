"""The sandbox's settings, each read at call time so tests (and `settings` overrides) take effect.

Every name is optional in settings.py; the README's configuration table lists them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings


def _get(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def time_scale() -> float:
    """How much faster than real bitHuman generations run: 3 makes expression-1 ready in ~30 s."""
    return float(_get("SANDBOX_TIME_SCALE", 3.0))


def default_plan() -> str:
    return str(_get("SANDBOX_DEFAULT_PLAN", "pro"))


def default_credits() -> int:
    return int(_get("SANDBOX_DEFAULT_CREDITS", 10_000))


def latency_ms() -> int:
    """Added to every API answer (an account's own `latency_ms` wins)."""
    return int(_get("SANDBOX_LATENCY_MS", 0))


def error_rate() -> float:
    """Share of API requests answered `503 NO_AVAILABLE_WORKERS` (account's `error_rate` wins)."""
    return float(_get("SANDBOX_ERROR_RATE", 0.0))


def force_429_rate() -> float:
    """Share of API requests answered `429 RATE_LIMITED` regardless of the bucket."""
    return float(_get("SANDBOX_FORCE_429_RATE", 0.0))


def forced_retry_after() -> int:
    """`Retry-After` seconds on a forced 429."""
    return int(_get("SANDBOX_FORCED_RETRY_AFTER", 1))


def rate_limits_enabled() -> bool:
    return bool(_get("SANDBOX_RATE_LIMITS_ENABLED", True))


def room_ttl() -> float:
    """Seconds an embed room stays live after the page's last heartbeat."""
    return float(_get("SANDBOX_ROOM_TTL", 30.0))


def runtime_room_ttl() -> float:
    """Seconds a room registered by a runtime token stays live unless ended earlier."""
    return float(_get("SANDBOX_RUNTIME_ROOM_TTL", 3600.0))


def embed_token_ttl() -> int:
    return int(_get("SANDBOX_EMBED_TOKEN_TTL", 3600))


def embed_poll_ms() -> int:
    """How often the embed page polls for messages (the poll is also its heartbeat)."""
    return int(_get("SANDBOX_EMBED_POLL_MS", 1000))


def embed_frame_ancestors() -> list[str]:
    """CSP frame-ancestors of the hosted embed page: by default only the portal's own origin
    (its session console) may put it in an iframe."""
    value = _get("SANDBOX_EMBED_FRAME_ANCESTORS", ["'self'"])
    return [value] if isinstance(value, str) else list(value)


def webhook_timeout() -> float:
    return float(_get("SANDBOX_WEBHOOK_TIMEOUT", 10.0))


def webhook_max_retries() -> int:
    return int(_get("SANDBOX_WEBHOOK_MAX_RETRIES", 3))


def webhook_backoff() -> float:
    """Seconds before the first retry; doubled for each further one."""
    return float(_get("SANDBOX_WEBHOOK_BACKOFF", 10.0))


def webhook_allow_local() -> bool:
    """Allow http:// and private/loopback webhook hosts (local receivers).

    Default: true when the sandbox itself is served from a loopback host (SANDBOX_BASE_URL), i.e.
    a developer machine or CI; a public deployment only delivers to public HTTPS endpoints.
    """
    value = _get("SANDBOX_WEBHOOK_ALLOW_LOCAL", None)
    if value is not None:
        return bool(value)
    host = urlsplit(str(_get("SANDBOX_BASE_URL", ""))).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")


def idempotency_ttl() -> int:
    return int(_get("SANDBOX_IDEMPOTENCY_TTL", 24 * 3600))
