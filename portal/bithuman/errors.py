"""The one exception hierarchy for bitHuman failures, mapped from the API's error envelope.

Every failure of a call raises a `BithumanError`: callers never see httpx, json or pydantic
exceptions. Messages carry what bitHuman said and never anything from the request (headers hold
the API secret).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccountSuspendedError",
    "AgentNotFoundError",
    "AuthenticationError",
    "BithumanError",
    "ConcurrencyLimitError",
    "ConflictError",
    "InsufficientCreditsError",
    "MalformedResponseError",
    "NoActiveRoomsError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "SessionLimitError",
    "TransportError",
    "UpstreamError",
    "ValidationError",
    "error_from_response",
]


class BithumanError(Exception):
    """A bitHuman call failed. `code` is bitHuman's error code (or one of ours, in capitals)."""

    code: str
    message: str
    http_status: int | None
    retry_after: float | None
    request_id: str | None

    def __init__(
        self,
        *,
        code: str,
        message: str,
        http_status: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.http_status = http_status
        # Seconds the server asked us to wait (Retry-After), when it said.
        self.retry_after = retry_after
        # bitHuman's X-Request-Id of the failed answer: its support asks for it.
        self.request_id = request_id
        super().__init__(message)

    def __str__(self) -> str:
        status = f"HTTP {self.http_status} " if self.http_status is not None else ""
        return f"{status}{self.code}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"http_status={self.http_status!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only __init__ defeats Exception's default pickling, which Celery relies on.
        return (_error_rebuild, (type(self), dict(self.__dict__)))


def _error_rebuild(error_class: type[BithumanError], state: dict[str, Any]) -> BithumanError:
    error = error_class.__new__(error_class)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class AuthenticationError(BithumanError):
    """401: the secret is missing (MISSING_AUTH) or wrong (UNAUTHORIZED)."""


class AccountSuspendedError(BithumanError):
    """401/403 ACCOUNT_SUSPENDED: the secret is fine, its account is below the suspension floor.

    Not an AuthenticationError: replacing the secret does not help, topping up does."""


class InsufficientCreditsError(BithumanError):
    """402 INSUFFICIENT_BALANCE: the account must top up before this call can succeed."""


class PermissionDeniedError(BithumanError):
    """403 other than the concurrency limit and a suspended account: e.g. a key revoked."""


class ConcurrencyLimitError(BithumanError):
    """403 CONCURRENCY_LIMIT_REACHED: the plan's concurrent live sessions are all in use."""


class NotFoundError(BithumanError):
    """404 NOT_FOUND for something that is neither an agent nor its live rooms (e.g. a webhook)."""


class AgentNotFoundError(NotFoundError):
    """404: the agent does not exist or this secret does not own it."""


class NoActiveRoomsError(NotFoundError):
    """404: the agent exists but nobody is connected to it, so there is no room to speak into."""


class ConflictError(BithumanError):
    """409: the agent is not in a state for this call yet (MODEL_NOT_GENERATED, AGENT_NOT_READY)."""


class ValidationError(BithumanError):
    """400, 413, 415, 422: bitHuman rejected what we sent (VALIDATION_ERROR, MISSING_PARAM, ...)."""


class RateLimitedError(BithumanError):
    """429 RATE_LIMITED: `retry_after` says how many seconds to wait, when the server said;
    `limit` (X-RateLimit-Limit, per minute) and `reset_at` (X-RateLimit-Reset, unix seconds)
    when the answer carried them (api/rate-limits.md: coverage is uneven)."""

    limit: int | None = None
    reset_at: float | None = None


class SessionLimitError(BithumanError):
    """429 SESSION_LIMIT: the account's concurrent-session capacity is in use.

    Not a RateLimitedError: waiting out a Retry-After does not free a session, only a session
    ending does, so the client does not retry it."""


class UpstreamError(BithumanError):
    """5xx: bitHuman failed or is overloaded (INTERNAL_ERROR, NO_AVAILABLE_WORKERS, ...)."""


class TransportError(BithumanError):
    """No HTTP answer: connection refused, DNS failure, timeout, broken connection."""

    request_may_have_arrived: bool

    def __init__(self, *, message: str, request_may_have_arrived: bool) -> None:
        super().__init__(code="TRANSPORT_ERROR", message=message)
        # False only when the connection was never established: then even a non-idempotent call
        # is safe to send again.
        self.request_may_have_arrived = request_may_have_arrived


class MalformedResponseError(BithumanError):
    """bitHuman answered something that is not the documented shape (or not JSON at all).

    An unknown route answers `404 {"detail": "Not Found"}`: that lands here too, and usually means
    the base URL is wrong.
    """


# Client-side codes for failures that carry no bitHuman code.
MALFORMED_RESPONSE = "MALFORMED_RESPONSE"
UPSTREAM_ERROR = "UPSTREAM_ERROR"

# bitHuman answers the same NOT_FOUND code for both; only the message tells them apart
# ("No active rooms found for agent <code>" vs "Agent not found for code: <code>").
_NO_ACTIVE_ROOMS_PREFIX = "no active rooms"
_AGENT_NOT_FOUND_PREFIX = "agent not found"

_CLASS_BY_STATUS: dict[int, type[BithumanError]] = {
    400: ValidationError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: ValidationError,
    415: ValidationError,
    422: ValidationError,
    429: RateLimitedError,
}


def _envelope_parse(body: Any) -> tuple[str, str] | None:
    """(code, message) from `{"error": {"code", "message", "httpStatus"}, ...}`, or None."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if not isinstance(error, dict):
        return None
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not code or not isinstance(message, str):
        return None
    return code, message


def _error_class_choose(*, http_status: int, code: str, message: str) -> type[BithumanError]:
    if http_status >= 500:
        return UpstreamError
    if code == "CONCURRENCY_LIMIT_REACHED":
        return ConcurrencyLimitError
    if code == "ACCOUNT_SUSPENDED":
        return AccountSuspendedError
    if code == "SESSION_LIMIT":
        return SessionLimitError
    if http_status == 404:
        lowered = message.strip().lower()
        if lowered.startswith(_NO_ACTIVE_ROOMS_PREFIX):
            return NoActiveRoomsError
        if lowered.startswith(_AGENT_NOT_FOUND_PREFIX):
            return AgentNotFoundError
    return _CLASS_BY_STATUS.get(http_status, BithumanError)


def error_from_response(
    *,
    http_status: int,
    body: Any,
    body_text: str,
    retry_after: float | None,
    request_id: str | None = None,
) -> BithumanError:
    """The exception for a non-2xx answer. `body` is the decoded JSON, or None if it was not JSON.

    A 5xx or 429 is an `UpstreamError` / `RateLimitedError` whatever its body (a proxy's HTML page
    is still a transient failure worth retrying); any other status without the envelope is a
    `MalformedResponseError`.
    """
    envelope = _envelope_parse(body)
    if envelope is not None:
        code, message = envelope
        error_class = _error_class_choose(http_status=http_status, code=code, message=message)
        return error_class(
            code=code,
            message=message,
            http_status=http_status,
            retry_after=retry_after,
            request_id=request_id,
        )
    snippet = body_text[:120]
    if http_status >= 500:
        return UpstreamError(
            code=UPSTREAM_ERROR,
            message=f"bitHuman failed without an error envelope: {snippet!r}",
            http_status=http_status,
            retry_after=retry_after,
            request_id=request_id,
        )
    if http_status == 429:
        return RateLimitedError(
            code="RATE_LIMITED",
            message="bitHuman rate limit reached",
            http_status=http_status,
            retry_after=retry_after,
            request_id=request_id,
        )
    hint = " (an unknown route: is the base URL right?)" if _is_unknown_route(body) else ""
    return MalformedResponseError(
        code=MALFORMED_RESPONSE,
        message=f"HTTP {http_status} without bitHuman's error envelope{hint}: {snippet!r}",
        http_status=http_status,
        request_id=request_id,
    )


def _is_unknown_route(body: Any) -> bool:
    return isinstance(body, dict) and set(body) == {"detail"}
