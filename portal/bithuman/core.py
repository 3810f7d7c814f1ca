"""What the bitHuman clients share: each operation described once as a `_Call` (method, path,
body, how to parse the answer, whether sending it twice is harmless), and `_ClientCore`, which
owns configuration, response mapping and retry decisions. `BithumanClient` (client.py) and
`AsyncBithumanClient` (async_client.py) only differ in how they send a request and how they
sleep.

Retries: 429 RATE_LIMITED always (the request was refused before any work; a 429 SESSION_LIMIT
never: only a session ending frees capacity), 5xx and network failures with
exponential backoff and jitter, honouring Retry-After, within `max_retries` and a total sleep
budget. A call that is not safe to replay (speak, add-context, webhook creation, runtime tokens)
is retried only when the server provably did nothing: 429, 503, or a connection never established.
Generate is replay-safe only because its Idempotency-Key is reused on every attempt.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, cast
from urllib.parse import quote

import httpx
import pydantic
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from portal.bithuman.errors import (
    MALFORMED_RESPONSE,
    BithumanError,
    MalformedResponseError,
    RateLimitedError,
    TransportError,
    UpstreamError,
    error_from_response,
)
from portal.bithuman.types import (
    AgentPage,
    AgentStatus,
    GenerationStarted,
    UsagePage,
    Webhook,
)

logger = logging.getLogger(__name__)

SECRET_HEADER: Final = "api-secret"  # noqa: S105 - a header name, not a secret
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
USER_AGENT: Final = "bithuman-portal/0.1 (+httpx)"

# Backoff before retry n (0-based) is drawn from [d/2, d] with d = min(MAX, BASE * 2**n).
BACKOFF_BASE_SECONDS: Final = 0.5
BACKOFF_MAX_SECONDS: Final = 8.0
# A web request cannot wait long: past this much sleeping we give up and let the caller decide
# (a RateLimitedError keeps `retry_after` so a task can reschedule itself).
DEFAULT_MAX_TOTAL_SLEEP_SECONDS: Final = 10.0
# Failing to connect should fail fast, so retries happen within the sleep budget.
CONNECT_TIMEOUT_MAX_SECONDS: Final = 5.0

_POOL_LIMITS: Final = httpx.Limits(max_connections=20, max_keepalive_connections=10)
# These failures happen before a byte reaches bitHuman, so any call is safe to send again.
_NOT_SENT_ERRORS: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


# --- Calls: each operation described once ------------------------------------------------------


class _ShapeError(Exception):
    """A 2xx body that is not the documented shape (turned into MalformedResponseError)."""


@dataclass(frozen=True, slots=True)
class _Call[T]:
    method: str
    path: str
    parse: Callable[[Any], T]
    json: dict[str, Any] | None = None
    params: dict[str, str | int] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Whether the server doing this twice is harmless (for retries after an ambiguous failure).
    replay_safe: bool = True
    # Seconds this call may take when it needs longer than BITHUMAN_TIMEOUT (a file upload).
    timeout: float | None = None


def _segment(value: str) -> str:
    """A path segment, escaped: an agent code like `../webhooks` must not change the route."""
    if not value:
        raise ValueError("an empty identifier cannot name a bitHuman resource")
    return quote(value, safe="")


def _body(**fields: Any) -> dict[str, Any]:
    # The spec's optional fields are absent rather than null; null would fail its types.
    return {name: value for name, value in fields.items() if value is not None}


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _ShapeError("expected a JSON object")
    return body


def _data_object(body: Any) -> dict[str, Any]:
    data = _object(body).get("data")
    if not isinstance(data, dict):
        raise _ShapeError('expected "data" to be an object')
    return data


def _data_list(body: Any) -> list[Any]:
    data = _object(body).get("data")
    if not isinstance(data, list):
        raise _ShapeError('expected "data" to be a list')
    return data


def _valid_parse(body: Any) -> bool:
    valid = _object(body).get("valid")
    if not isinstance(valid, bool):
        raise _ShapeError('expected "valid" to be a boolean')
    return valid


def _agent_page_parse(body: Any) -> AgentPage:
    return AgentPage.model_validate(
        {"agents": _data_list(body), "pagination": _object(body).get("pagination")}
    )


def _usage_page_parse(body: Any) -> UsagePage:
    return UsagePage.model_validate(
        {"events": _data_list(body), "pagination": _object(body).get("pagination")}
    )


def _webhooks_parse(body: Any) -> tuple[Webhook, ...]:
    return tuple(Webhook.model_validate(item) for item in _data_list(body))


def _validate_call() -> _Call[bool]:
    return _Call(method="POST", path="/v1/validate", parse=_valid_parse)


def _agent_generate_call(*, body: dict[str, Any], idempotency_key: str) -> _Call[GenerationStarted]:
    return _Call(
        method="POST",
        path="/v1/agent/generate",
        json=body,
        headers={IDEMPOTENCY_HEADER: idempotency_key},
        parse=lambda payload: GenerationStarted.model_validate(_object(payload)),
        # Safe only because every attempt carries the same key: a replay returns the first job.
        replay_safe=True,
    )


def _agent_status_call(*, agent_id: str) -> _Call[AgentStatus]:
    return _Call(
        method="GET",
        path=f"/v1/agent/status/{_segment(agent_id)}",
        parse=lambda payload: AgentStatus.model_validate(_data_object(payload)),
    )


# --- Shared core: configuration, response mapping, retry decisions ------------------------------


def _secret_mask(secret: str) -> str:
    # The last four characters help tell secrets apart, but only when they reveal little.
    return "****" + secret[-4:] if len(secret) >= 16 else "****"


def _retry_after_parse(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


REQUEST_ID_HEADER: Final = "X-Request-Id"
_REQUEST_ID_MAX = 128


def request_id_of(response: httpx.Response) -> str | None:
    """bitHuman's correlation id of an answer (kept with every failure for its support), or
    None. Only printable ASCII and bounded: it is shown on pages and stored."""
    value = response.headers.get(REQUEST_ID_HEADER, "").strip()
    if not value or len(value) > _REQUEST_ID_MAX or not value.isascii() or not value.isprintable():
        return None
    return value


def _header_number(response: httpx.Response, name: str, *, integer: bool = False) -> Any:
    """A numeric rate-limit header, or None when absent or not a finite number."""
    try:
        value = float(response.headers.get(name, ""))
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return int(value) if integer else value


def _is_retryable(error: BithumanError, *, replay_safe: bool) -> bool:
    # SESSION_LIMIT is a 429 too, but not a RateLimitedError: only a session ending frees one,
    # so retrying after a Retry-After would be blind (api/errors.md).
    if isinstance(error, RateLimitedError):
        return True
    if isinstance(error, UpstreamError):
        # 503 means the request was not taken on (NO_AVAILABLE_WORKERS, MODEL_NOT_YET_AVAILABLE).
        return replay_safe or error.http_status == 503
    if isinstance(error, TransportError):
        return replay_safe or not error.request_may_have_arrived
    return False


class _ClientFace:
    """What both clients show of themselves: never the secret (only its masked form)."""

    _core: _ClientCore

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self._core.base_url!r}, "
            f"api_secret={self._core.secret_masked!r})"
        )


class _ClientCore:
    """Everything the sync and async clients share except sending and sleeping."""

    @sensitive_variables("api_secret")
    def __init__(
        self,
        *,
        base_url: str,
        api_secret: str,
        timeout: float | None,
        max_retries: int | None,
        max_total_sleep: float,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is empty")
        if not api_secret:
            raise ValueError("api_secret is empty")
        self.base_url = base_url.rstrip("/")
        self._api_secret = api_secret
        self.timeout = float(settings.BITHUMAN_TIMEOUT if timeout is None else timeout)
        self.max_retries = int(
            settings.BITHUMAN_MAX_RETRIES if max_retries is None else max_retries
        )
        if self.max_retries < 0:
            raise ValueError("max_retries cannot be negative")
        self.max_total_sleep = max_total_sleep

    @property
    def secret_masked(self) -> str:
        return _secret_mask(self._api_secret)

    def http_options(self) -> dict[str, Any]:
        """Keyword arguments for httpx.Client / httpx.AsyncClient."""
        return {
            "base_url": self.base_url,
            # The secret lives only in the pooled client's default headers: it is never a local
            # variable of a request frame (error pages show those) and never logged.
            "headers": {
                SECRET_HEADER: self._api_secret,
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            "timeout": httpx.Timeout(
                self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT_MAX_SECONDS)
            ),
            "limits": _POOL_LIMITS,
        }

    def request_build[T](
        self, http: httpx.Client | httpx.AsyncClient, call: _Call[T]
    ) -> httpx.Request:
        if call.timeout is None:
            return http.build_request(
                call.method, call.path, json=call.json, params=call.params, headers=call.headers
            )
        timeout = httpx.Timeout(
            max(call.timeout, self.timeout),
            connect=min(self.timeout, CONNECT_TIMEOUT_MAX_SECONDS),
        )
        return http.build_request(
            call.method,
            call.path,
            json=call.json,
            params=call.params,
            headers=call.headers,
            timeout=timeout,
        )

    def scrub(self, text: str) -> str:
        """Text from the network with the secret removed, in case a server ever echoes it."""
        return text.replace(self._api_secret, self.secret_masked)

    def response_map[T](self, call: _Call[T], response: httpx.Response) -> T:
        """The parsed result of a 2xx answer; raise the matching BithumanError otherwise."""
        try:
            body: Any = response.json()
        except ValueError:  # not JSON, or not decodable text
            body = None
        if response.is_success:
            if body is None:
                raise self._malformed(response, "the body is not JSON")
            try:
                return call.parse(body)
            except _ShapeError as exc:
                raise self._malformed(response, str(exc)) from None
            except pydantic.ValidationError as exc:
                raise self._malformed(response, _validation_summary(exc)) from None
        error = error_from_response(
            http_status=response.status_code,
            body=body,
            body_text=response.text,
            retry_after=_retry_after_parse(response.headers.get("Retry-After")),
            request_id=request_id_of(response),
        )
        if isinstance(error, RateLimitedError):
            error.limit = _header_number(response, "X-RateLimit-Limit", integer=True)
            error.reset_at = _header_number(response, "X-RateLimit-Reset")
        raise self._scrubbed(error)

    def transport_error_wrap(self, exc: httpx.RequestError) -> TransportError:
        # Not chained to `exc`: httpx exceptions hold the request, and the request its headers.
        detail = self.scrub(str(exc)) or "no detail"
        return TransportError(
            message=f"no answer from bitHuman ({type(exc).__name__}: {detail})",
            request_may_have_arrived=not isinstance(exc, _NOT_SENT_ERRORS),
        )

    def retry_delay_choose(
        self, *, error: BithumanError, replay_safe: bool, attempt: int, slept: float
    ) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up and raise `error`."""
        if attempt >= self.max_retries or not _is_retryable(error, replay_safe=replay_safe):
            return None
        remaining = self.max_total_sleep - slept
        if error.retry_after is not None:
            # The server said when; retrying sooner would only be refused again.
            return error.retry_after if error.retry_after <= remaining else None
        if remaining <= 0:
            return None
        backoff = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
        # Jitter spreads out retries of many workers hit by the same outage (not security).
        delay = backoff / 2 + random.uniform(0, backoff / 2)  # noqa: S311
        return min(delay, remaining)

    def attempt_log(self, *, call: _Call[Any], status: int, started: float, attempt: int) -> None:
        # Method, path and status only: never headers (the secret) nor bodies (tokens, prompts).
        logger.debug(
            "bitHuman %s %s -> %s in %.0f ms (attempt %d)",
            call.method,
            call.path,
            status,
            (time.monotonic() - started) * 1000,
            attempt + 1,
        )

    def retry_log(
        self, *, call: _Call[Any], error: BithumanError, delay: float, attempt: int
    ) -> None:
        logger.info(
            "bitHuman %s %s failed (%s); retry %d of %d in %.2f s",
            call.method,
            call.path,
            error.code,
            attempt + 1,
            self.max_retries,
            delay,
        )

    def exchange[T](
        self, http: httpx.Client | httpx.AsyncClient, call: _Call[T]
    ) -> Generator[httpx.Request | float, httpx.Response | httpx.RequestError | None, T]:
        """One call with its retries, without I/O: yields a request to send (send back the
        response or the httpx.RequestError it raised) or a delay to sleep (send back None);
        returns the parsed answer or raises the final BithumanError. The sync and async
        clients only drive it."""
        slept = 0.0
        attempt = 0
        while True:
            started = time.monotonic()
            error: BithumanError
            outcome = yield self.request_build(http, call)
            if isinstance(outcome, httpx.RequestError):
                error = self.transport_error_wrap(outcome)
            else:
                response = cast(httpx.Response, outcome)  # the driver sends back what it got
                self.attempt_log(
                    call=call, status=response.status_code, started=started, attempt=attempt
                )
                try:
                    return self.response_map(call, response)
                except BithumanError as exc:
                    error = exc
            delay = self.retry_delay_choose(
                error=error, replay_safe=call.replay_safe, attempt=attempt, slept=slept
            )
            if delay is None:
                raise error
            self.retry_log(call=call, error=error, delay=delay, attempt=attempt)
            yield delay
            slept += delay
            attempt += 1

    def _malformed(self, response: httpx.Response, reason: str) -> MalformedResponseError:
        return self._scrubbed(
            MalformedResponseError(
                code=MALFORMED_RESPONSE,
                message=f"unexpected bitHuman answer to {response.request.method} "
                f"{response.request.url.path}: {reason}",
                http_status=response.status_code,
                request_id=request_id_of(response),
            )
        )

    def _scrubbed[E: BithumanError](self, error: E) -> E:
        error.message = self.scrub(error.message)
        error.args = (error.message,)
        return error


def _validation_summary(exc: pydantic.ValidationError) -> str:
    # Locations and reasons only: pydantic's default text quotes the input, which may be a token.
    problems = exc.errors(include_input=False, include_url=False, include_context=False)
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}"
        for problem in problems[:5]
    )
