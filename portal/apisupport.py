"""What every app's API operations share (portal core): the error envelope, API-key
authentication with its throttles and per-key rate limit, scopes, pagination, text fields.

- Auth: `Authorization: Bearer bhp_...`. The organization comes only from the key.
- Every error: `{"error": {"code", "message", "details"}}`; interfaces/api.py maps exceptions to it.
- Rate limit per key (fixed one-minute windows in the cache, Redis in production); the headers
  go on every answer through `ApiRateLimitHeadersMiddleware`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Annotated, Any

import redis
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Schema
from ninja.renderers import JSONRenderer
from ninja.security import HttpBearer
from pydantic import AfterValidator, Field

from portal import apikeys
from portal.bithuman import errors as bh_errors
from portal.clientip import client_ip
from portal.errors import ApplicationError, ErrorKind
from portal.models import ApiKey
from portal.tenancy import ApiKeyActor, organization_active_require
from portal.text import ONE_LINE_MESSAGE, is_one_line

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An API answer other than success: status, snake_case code, message, details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    response = JsonResponse(
        {"error": {"code": code, "message": message, "details": details or {}}}, status=status
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


# --- Authentication and rate limits -------------------------------------------------------------


# Failed key checks one client address may make per window before it is refused (429) for the
# rest of the window. Per address, so a guesser never locks out the key's owner elsewhere.
API_AUTH_FAILURE_LIMIT = 20
API_AUTH_FAILURE_WINDOW = 300  # seconds
RATE_WINDOW_TTL = 90  # seconds a one-minute counter is kept


def _auth_failures_key(request: HttpRequest) -> str:
    return f"api:authfail:{client_ip(request) or 'unknown'}"


def _redis_backend() -> RedisCache | None:
    backend = caches["default"]
    return backend if isinstance(backend, RedisCache) else None


def _counts(request: HttpRequest, counter: str) -> tuple[int, int]:
    """(failed key checks from this address in their window, this key's requests in this
    minute, this one counted): with Redis one round trip (GET; SET NX with the expiry, INCR),
    any other cache through its API. While Redis is unreachable both count from zero, as the
    cache degrades (portal.cache)."""
    failures_key = _auth_failures_key(request)
    backend = _redis_backend()
    if backend is None:
        failures = int(cache.get(failures_key, 0))
        cache.add(counter, 0, timeout=RATE_WINDOW_TTL)
        try:
            return failures, cache.incr(counter)
        except ValueError:  # expired between add and incr
            cache.set(counter, 1, timeout=RATE_WINDOW_TTL)
            return failures, 1
    key = backend.make_key(counter)
    try:
        pipeline = backend._cache.get_client(write=True).pipeline(transaction=False)
        pipeline.get(backend.make_key(failures_key))
        # The raw integers the cache API stores for `add(counter, 0)` and `incr`.
        pipeline.set(key, 0, ex=RATE_WINDOW_TTL, nx=True)
        pipeline.incr(key)
        failures, _created, used = pipeline.execute()
    except (redis.ConnectionError, redis.TimeoutError):
        return 0, 1
    return int(failures or 0), int(used)


def _rate_limit(request: HttpRequest, *, used: int, reset: int, now: float) -> None:
    limit = settings.API_RATE_LIMIT_PER_MINUTE
    request.api_rate = {  # type: ignore[attr-defined]
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(0, limit - used)),
        "X-RateLimit-Reset": str(reset),
    }
    if used > limit:
        raise rate_limited(
            reset - now, f"Too many requests for this key: the limit is {limit} per minute."
        )


def _auth_throttle_check(request: HttpRequest, failures: int | None = None) -> None:
    limit = getattr(settings, "API_AUTH_FAILURE_LIMIT", API_AUTH_FAILURE_LIMIT)
    if failures is None:
        failures = int(cache.get(_auth_failures_key(request), 0))
    if failures >= limit:
        window = getattr(settings, "API_AUTH_FAILURE_WINDOW", API_AUTH_FAILURE_WINDOW)
        raise ApiError(
            429,
            "too_many_failed_authentications",
            "Too many invalid API keys from this address; try again later.",
            details={"retry_after": window},
            headers={"Retry-After": str(window)},
        )


def _auth_failure_record(request: HttpRequest) -> None:
    counter = _auth_failures_key(request)
    window = getattr(settings, "API_AUTH_FAILURE_WINDOW", API_AUTH_FAILURE_WINDOW)
    if not cache.add(counter, 1, timeout=window):
        try:
            cache.incr(counter)
        except ValueError:  # expired between add and incr
            cache.set(counter, 1, timeout=window)


class ApiKeyAuth(HttpBearer):
    """The key (SHA-256 of a 256-bit random key, looked up by its clear prefix), then the
    address's failed checks and the key's per-minute count in one cache round trip. An address
    over its failure limit is refused whatever it sends."""

    openapi_description = "An organization API key: `Authorization: Bearer bhp_...`"

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        api_key = apikeys.api_key_authenticate(key=token)
        if api_key is None:
            _auth_throttle_check(request)
            _auth_failure_record(request)
            return None
        now = time.time()
        window = int(now // 60)
        failures, used = _counts(request, f"api:rate:{api_key.pk}:{window}")
        _auth_throttle_check(request, failures)
        _rate_limit(request, used=used, reset=(window + 1) * 60, now=now)
        request.organization = api_key.organization  # type: ignore[attr-defined]
        organization_active_require(api_key.organization)  # 403 organization_suspended
        return api_key


class ApiRateLimitHeadersMiddleware:
    """Put the per-key rate-limit headers (computed during authentication) on every answer."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self.get_response(request)
        for name, value in getattr(request, "api_rate", {}).items():
            response[name] = value
        return response


# --- What views use -----------------------------------------------------------------------------


def api_key_of(request: HttpRequest) -> ApiKey:
    return request.auth  # type: ignore[attr-defined]


def scope_require(request: HttpRequest, scope: str) -> ApiKey:
    api_key = api_key_of(request)
    if scope not in api_key.scopes:
        raise ApiError(403, "forbidden", f"This API key does not have the {scope} scope.")
    return api_key


def actor_for(api_key: ApiKey) -> ApiKeyActor:
    """The services' actor for a key (portal.tenancy.ApiKeyActor)."""
    return ApiKeyActor(api_key=api_key)


def _text_clean(value: str) -> str:
    """Text we can store and show: no NUL (PostgreSQL refuses it), no lone surrogates."""
    if "\x00" in value:
        raise ValueError("Must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("Must be valid Unicode text.") from None
    return value


Text = Annotated[str, AfterValidator(_text_clean)]


def _line_clean(value: str) -> str:
    if not is_one_line(value):
        raise ValueError(ONE_LINE_MESSAGE)
    return value


# A name or other one-line field: also no line breaks or control characters (portal.text).
Line = Annotated[str, AfterValidator(_text_clean), AfterValidator(_line_clean)]


MAX_OFFSET = 1_000_000_000


class ListQuery(Schema):
    limit: int = Field(default=20, ge=1, le=100, description="Page size, 1 to 100.")
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, description="How many items to skip.")


def page_bounds(query: ListQuery) -> tuple[int, int]:
    """The slice of a list (the schema already bounds limit and offset)."""
    return query.offset, query.offset + query.limit


def trusted_response(request: HttpRequest, data: Any, *, status: int = 200) -> HttpResponse:
    """Render an answer the operation built from its declared schema's own fields (the schema
    still documents it), without validating it again: ninja's response validation costs
    ~0.1 ms per object, most of a 25-agent page's time."""
    content = _RENDERER.render(request, data, response_status=status)
    return HttpResponse(
        content, status=status, content_type=_RENDERER.media_type + "; charset=utf-8"
    )


_RENDERER = JSONRenderer()


def rate_limited(retry_after: float | None, message: str = "") -> ApiError:
    """The one shape of a 429: ours per key, or bitHuman's passed on with its Retry-After."""
    seconds = max(1, math.ceil(retry_after or 1))
    return ApiError(
        429,
        "rate_limited",
        message or f"bitHuman is rate limiting this organization: retry in {seconds} s.",
        details={"retry_after": seconds},
        headers={"Retry-After": str(seconds)},
    )


def api_error_for(error: ApplicationError) -> ApiError:
    """The one mapping of a domain error to the API (portal.errors has the table): its kind
    decides the status, its code and field the envelope. interfaces/api.py installs it as the
    handler of every ApplicationError an operation lets through."""
    kind = error.kind
    details: dict[str, Any] = {}
    if error.field and kind != ErrorKind.NOT_FOUND:
        details["fields"] = {error.field: [error.message]}
    if kind == ErrorKind.RATE_LIMITED:
        retry_after = getattr(error, "retry_after", None) or error.extra.get("retry_after")
        from_upstream = "upstream_status" in error.extra
        limited = rate_limited(retry_after, "" if from_upstream else error.message)
        limited.code = error.code
        if error.extra.get("upstream_request_id"):
            limited.details["upstream_request_id"] = error.extra["upstream_request_id"]
        return limited
    if kind in (ErrorKind.UPSTREAM_REFUSED, ErrorKind.UPSTREAM_FAILED):
        details = {"upstream_status": error.extra.get("upstream_status"), **details}
        if error.extra.get("upstream_request_id"):
            # bitHuman's X-Request-Id: quote it to bitHuman support.
            details["upstream_request_id"] = error.extra["upstream_request_id"]
    return ApiError(_KIND_STATUS[kind], error.code, error.message, details=details)


_KIND_STATUS = {
    ErrorKind.INVALID: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.UPSTREAM_REFUSED: 409,
    ErrorKind.UPSTREAM_FAILED: 502,
    ErrorKind.RATE_LIMITED: 429,
}


def upstream_error(error: bh_errors.BithumanError) -> ApiError:
    """bitHuman's refusal, as our API says it."""
    if isinstance(error, bh_errors.RateLimitedError):
        return rate_limited(error.retry_after)
    status = 503 if isinstance(error, bh_errors.TransportError | bh_errors.UpstreamError) else 502
    return ApiError(
        status, "upstream_error", f"bitHuman: {error.message}", details={"code": error.code}
    )
