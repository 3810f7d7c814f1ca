"""Every error bitHuman answers becomes one typed exception; odd answers never leak raw errors."""

import pickle

import httpx
import pytest

from portal.bithuman import (
    AccountSuspendedError,
    AgentNotFoundError,
    AuthenticationError,
    BithumanError,
    ConcurrencyLimitError,
    ConflictError,
    InsufficientCreditsError,
    MalformedResponseError,
    NoActiveRoomsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    SessionLimitError,
    UpstreamError,
    ValidationError,
)
from tests.bithuman.conftest import envelope

# Every code NOTES.md lists, plus a 403 that is not the concurrency limit.
ERROR_CASES = [
    (400, "VALIDATION_ERROR", "Invalid model 'my-model'", ValidationError),
    (400, "MISSING_PARAM", "Missing required field: message", ValidationError),
    (400, "VIDEO_INPUT_NOT_SUPPORTED", "Agent creation is image-only.", ValidationError),
    (401, "UNAUTHORIZED", "Invalid API secret", AuthenticationError),
    (401, "MISSING_AUTH", "Missing api-secret header", AuthenticationError),
    (401, "ACCOUNT_SUSPENDED", "Account suspended", AccountSuspendedError),
    (403, "ACCOUNT_SUSPENDED", "Account suspended", AccountSuspendedError),
    (402, "INSUFFICIENT_BALANCE", "Not enough credits", InsufficientCreditsError),
    (403, "CONCURRENCY_LIMIT_REACHED", "3 of 3 sessions in use", ConcurrencyLimitError),
    (403, "KEY_REVOKED", "This API secret was revoked", PermissionDeniedError),
    (404, "NOT_FOUND", "Webhook not found", NotFoundError),
    (409, "MODEL_NOT_GENERATED", "expression-2 model hasn't been generated yet", ConflictError),
    (409, "AGENT_NOT_READY", "Agent is still generating", ConflictError),
    (413, "FILE_TOO_LARGE", "Image over 10 MB", ValidationError),
    (415, "UNSUPPORTED_TYPE", "Use JPEG, PNG or WebP", ValidationError),
    (422, "MODEL_SUBJECT_MISMATCH", "essence-2 requires a photorealistic human", ValidationError),
    (429, "RATE_LIMITED", "Too many requests", RateLimitedError),
    (429, "SESSION_LIMIT", "Concurrent session limit reached", SessionLimitError),
    (500, "INTERNAL_ERROR", "Internal error", UpstreamError),
    (503, "NO_AVAILABLE_WORKERS", "No workers available", UpstreamError),
    (503, "MODEL_NOT_YET_AVAILABLE", "expression-2 isn't available yet", UpstreamError),
]


@pytest.mark.parametrize(
    ("http_status", "code", "message", "expected"),
    ERROR_CASES,
    ids=[f"{case[0]}-{case[1]}" for case in ERROR_CASES],
)
def test_each_error_code_maps_to_its_exception(
    api, make_client, http_status, code, message, expected
):
    client = make_client(max_retries=0)
    api.post("/v1/agent/generate").mock(return_value=envelope(http_status, code, message))

    with pytest.raises(BithumanError) as caught:
        client.agent_generate(prompt="x")

    error = caught.value
    assert type(error) is expected
    assert (error.code, error.message, error.http_status) == (code, message, http_status)
    assert code in str(error)


def test_rate_limited_carries_retry_after(api, make_client):
    client = make_client(max_retries=0)
    api.get("/v1/me").mock(
        return_value=envelope(429, "RATE_LIMITED", "slow down", headers={"Retry-After": "17"})
    )

    with pytest.raises(RateLimitedError) as caught:
        client.account_get()

    assert caught.value.retry_after == 17.0


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("No active rooms found for agent A78WKV4515", NoActiveRoomsError),
        ("Agent not found for code: A78WKV4515", AgentNotFoundError),
        ("Agent not found", AgentNotFoundError),  # the spec's own example
    ],
)
def test_the_two_404s_of_speak_are_told_apart(api, client, message, expected):
    route = api.post("/v1/agent/A78WKV4515/speak").mock(
        return_value=envelope(404, "NOT_FOUND", message)
    )

    with pytest.raises(NotFoundError) as caught:
        client.agent_speak(code="A78WKV4515", message="Hello")

    assert type(caught.value) is expected
    assert route.call_count == 1


def test_the_two_404_classes_are_distinct():
    assert not issubclass(NoActiveRoomsError, AgentNotFoundError)
    assert not issubclass(AgentNotFoundError, NoActiveRoomsError)


MALFORMED_ANSWERS = [
    httpx.Response(200, text="<html>maintenance</html>"),
    httpx.Response(200, text='{"data": '),
    httpx.Response(200, json=[]),
    httpx.Response(200, json={"success": True}),
    httpx.Response(200, json={"success": True, "data": []}),
    httpx.Response(200, json={"data": {"progress": 0.5}}),
    httpx.Response(200, json={"data": {"status": "ready", "progress": "lots"}}),
    httpx.Response(200, json={"data": {"status": "ready", "created_at": "yesterday"}}),
    httpx.Response(404, json={"detail": "Not Found"}),
    httpx.Response(400, json={"error": "bad request"}),
    httpx.Response(401, json={"error": {"message": "no code"}}),
    httpx.Response(403, text="Forbidden"),
]


@pytest.mark.parametrize(
    "answer",
    MALFORMED_ANSWERS,
    ids=[
        "html",
        "truncated-json",
        "list",
        "no-data",
        "data-list",
        "no-status",
        "progress-text",
        "bad-date",
        "unknown-route",
        "error-string",
        "error-without-code",
        "403-text",
    ],
)
def test_malformed_answers_raise_a_clear_error_and_are_not_retried(api, client, sleeps, answer):
    route = api.get("/v1/agent/status/A91XMB7113").mock(return_value=answer)

    with pytest.raises(MalformedResponseError) as caught:
        client.agent_status_get(agent_id="A91XMB7113")

    assert caught.value.http_status == answer.status_code
    assert caught.value.code == "MALFORMED_RESPONSE"
    assert route.call_count == 1
    assert sleeps == []


def test_unknown_route_hints_at_the_base_url(api, client):
    api.get("/v1/me").respond(404, json={"detail": "Not Found"})

    with pytest.raises(MalformedResponseError, match="base URL"):
        client.account_get()


def test_malformed_errors_do_not_quote_the_offending_value(api, client):
    api.post("/v1/embed-tokens/request").respond(
        json={"data": {"token": ["eyJ.leaked.jwt"], "sid": "s"}}
    )

    with pytest.raises(MalformedResponseError) as caught:
        client.embed_token_request(agent_id="A78WKV4515", fingerprint="f")

    assert "token" in str(caught.value)
    assert "eyJ.leaked.jwt" not in str(caught.value)


def test_a_5xx_without_envelope_is_still_an_upstream_error(api, make_client):
    client = make_client(max_retries=0)
    api.get("/v1/me").respond(502, text="<html>Bad Gateway</html>")

    with pytest.raises(UpstreamError) as caught:
        client.account_get()

    assert caught.value.http_status == 502


def test_errors_survive_pickling_for_celery():
    error = RateLimitedError(code="RATE_LIMITED", message="slow", http_status=429, retry_after=3.0)

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes

    assert type(copy) is RateLimitedError
    assert (copy.code, copy.message, copy.http_status, copy.retry_after) == (
        "RATE_LIMITED",
        "slow",
        429,
        3.0,
    )
    assert str(copy) == str(error)


def test_every_failed_answer_keeps_bithumans_request_id(api, make_client):
    client = make_client(max_retries=0)
    api.get("/v1/me").mock(
        return_value=envelope(
            402, "INSUFFICIENT_BALANCE", "Top up", headers={"X-Request-Id": "req_abc123"}
        )
    )
    api.post("/v1/agent/generate").mock(
        return_value=httpx.Response(200, json=[], headers={"X-Request-Id": "req_malformed"})
    )

    with pytest.raises(InsufficientCreditsError) as caught:
        client.account_get()
    with pytest.raises(MalformedResponseError) as malformed:
        client.agent_generate(prompt="x")

    assert caught.value.request_id == "req_abc123"
    assert malformed.value.request_id == "req_malformed"
    assert pickle.loads(pickle.dumps(caught.value)).request_id == "req_abc123"  # noqa: S301 - our own bytes


def test_an_unprintable_request_id_is_not_kept(api, make_client):
    client = make_client(max_retries=0)
    api.get("/v1/me").mock(
        return_value=envelope(500, "INTERNAL_ERROR", "x", headers={"X-Request-Id": "a" * 500})
    )

    with pytest.raises(UpstreamError) as caught:
        client.account_get()

    assert caught.value.request_id is None


def test_session_limit_and_suspension_are_not_their_lookalikes():
    # SESSION_LIMIT is a 429 but no rate limit; a suspended account is no bad secret.
    assert not issubclass(SessionLimitError, RateLimitedError)
    assert not issubclass(AccountSuspendedError, AuthenticationError)
