"""Retries: what is retried, how long the client waits, and when it gives up."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from portal.bithuman import (
    BithumanError,
    RateLimitedError,
    SessionLimitError,
    TransportError,
    UpstreamError,
)
from portal.bithuman.core import BACKOFF_BASE_SECONDS
from tests.bithuman.conftest import envelope


def ok_me() -> httpx.Response:
    return httpx.Response(200, json={"data": {"plan": "pro"}, "status": "success"})


def speak_ok() -> httpx.Response:
    return httpx.Response(
        200, json={"agent_code": "A78WKV4515", "context_type": "speak", "delivered_to_rooms": 1}
    )


def rate_limited(seconds: str) -> httpx.Response:
    return envelope(429, "RATE_LIMITED", "slow down", headers={"Retry-After": seconds})


def test_429_waits_exactly_what_retry_after_says(api, client, sleeps):
    route = api.get("/v1/me").mock(side_effect=[rate_limited("2"), rate_limited("3"), ok_me()])

    account = client.account_get()

    assert account.plan == "pro"
    assert route.call_count == 3
    assert sleeps == [2.0, 3.0]


def test_retry_after_beyond_the_sleep_budget_gives_up_at_once(api, make_client, sleeps):
    client = make_client(max_total_sleep=10.0)
    route = api.get("/v1/me").mock(side_effect=[rate_limited("60"), ok_me()])

    with pytest.raises(RateLimitedError) as caught:
        client.account_get()

    # The caller (a task) can reschedule itself for when bitHuman will accept it.
    assert caught.value.retry_after == 60.0
    assert route.call_count == 1
    assert sleeps == []


def test_503_backs_off_exponentially_with_jitter(api, client, sleeps):
    def busy() -> httpx.Response:
        return envelope(503, "NO_AVAILABLE_WORKERS", "No workers available")

    route = api.get("/v1/me").mock(side_effect=[busy(), busy(), busy(), ok_me()])

    client.account_get()

    assert route.call_count == 4
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):
        ceiling = BACKOFF_BASE_SECONDS * 2**attempt
        assert ceiling / 2 <= delay <= ceiling


def test_gives_up_after_max_retries(api, make_client, sleeps):
    client = make_client(max_retries=2)
    route = api.get("/v1/me").mock(return_value=envelope(500, "INTERNAL_ERROR", "boom"))

    with pytest.raises(UpstreamError) as caught:
        client.account_get()

    assert caught.value.code == "INTERNAL_ERROR"
    assert route.call_count == 3
    assert len(sleeps) == 2


def test_total_sleep_is_capped(api, make_client, sleeps):
    client = make_client(max_retries=10, max_total_sleep=1.0)
    api.get("/v1/me").mock(return_value=envelope(500, "INTERNAL_ERROR", "boom"))

    with pytest.raises(UpstreamError):
        client.account_get()

    assert sum(sleeps) <= 1.0
    assert len(sleeps) < 10


@pytest.mark.parametrize(
    ("http_status", "code"),
    [
        (400, "VALIDATION_ERROR"),
        (401, "UNAUTHORIZED"),
        (402, "INSUFFICIENT_BALANCE"),
        (403, "CONCURRENCY_LIMIT_REACHED"),
        (404, "NOT_FOUND"),
        (409, "AGENT_NOT_READY"),
        (422, "MODEL_SUBJECT_MISMATCH"),
    ],
)
def test_other_4xx_are_never_retried(api, client, sleeps, http_status, code):
    route = api.post("/v1/agent/generate").mock(
        side_effect=[envelope(http_status, code, "no"), httpx.Response(200, json={"agent_id": "A"})]
    )

    with pytest.raises(BithumanError) as caught:
        client.agent_generate(prompt="x")

    assert caught.value.http_status == http_status
    assert route.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
    ids=["connect-error", "connect-timeout", "read-timeout", "disconnected"],
)
def test_network_failures_become_transport_error_after_retries(api, client, sleeps, failure):
    route = api.get("/v1/me").mock(side_effect=failure)

    with pytest.raises(TransportError) as caught:
        client.account_get()

    assert caught.value.code == "TRANSPORT_ERROR"
    assert caught.value.http_status is None
    assert type(failure).__name__ in str(caught.value)
    assert route.call_count == 4  # one try + max_retries=3
    assert len(sleeps) == 3


def test_network_failure_then_success_recovers(api, client):
    api.get("/v1/me").mock(side_effect=[httpx.ReadTimeout("slow"), ok_me()])

    assert client.account_get().plan == "pro"


# Speak is not idempotent: the avatar would say it twice. It is retried only when bitHuman
# provably did nothing with the request.


@pytest.mark.parametrize(
    "failure",
    [
        envelope(500, "INTERNAL_ERROR", "boom"),
        httpx.Response(502, text="Bad Gateway"),
        httpx.ReadTimeout("read timed out"),
    ],
    ids=["500", "502", "read-timeout"],
)
def test_speak_is_not_replayed_after_an_ambiguous_failure(api, client, sleeps, failure):
    route = api.post("/v1/agent/A78WKV4515/speak").mock(side_effect=[failure, speak_ok()])

    with pytest.raises(BithumanError):
        client.agent_speak(code="A78WKV4515", message="Hello")

    assert route.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "failure",
    [
        rate_limited("1"),
        envelope(503, "NO_AVAILABLE_WORKERS", "busy"),
        httpx.ConnectError("connection refused"),
    ],
    ids=["429", "503", "connect-error"],
)
def test_speak_is_retried_when_the_request_was_not_taken_on(api, client, failure):
    route = api.post("/v1/agent/A78WKV4515/speak").mock(side_effect=[failure, speak_ok()])

    delivery = client.agent_speak(code="A78WKV4515", message="Hello")

    assert delivery.delivered_to_rooms == 1
    assert route.call_count == 2


def test_validate_is_not_retried_on_401(api, client, sleeps):
    route = api.post("/v1/validate").mock(
        return_value=envelope(401, "MISSING_AUTH", "Missing api-secret header")
    )

    assert client.validate() is False
    assert route.call_count == 1


def test_retry_after_may_be_an_http_date(api, client, sleeps):
    in_five_seconds = datetime.now(UTC) + timedelta(seconds=5)
    api.get("/v1/me").mock(
        side_effect=[rate_limited(format_datetime(in_five_seconds, usegmt=True)), ok_me()]
    )

    client.account_get()

    assert len(sleeps) == 1
    assert 3.0 <= sleeps[0] <= 5.0


def test_session_limit_is_not_retried_even_with_retry_after(api, client, sleeps):
    # Concurrency, not a rate: only a session ending frees capacity, so waiting blindly and
    # sending again would only be refused again (api/errors.md).
    route = api.get("/v1/me").mock(
        return_value=envelope(
            429, "SESSION_LIMIT", "Concurrent session limit", headers={"Retry-After": "1"}
        )
    )

    with pytest.raises(SessionLimitError):
        client.account_get()

    assert route.call_count == 1
    assert sleeps == []
