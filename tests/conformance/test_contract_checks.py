"""The harness itself: the checks that run after every conformance test must catch drift."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conformance.contract import Exchange, exchanges_check, validate_answer, validate_request

SECRET = httpx.Headers({"api-secret": "sbx_x", "content-type": "application/json"})
JSON = httpx.Headers({"content-type": "application/json"})


def request(method: str, path: str, body: object = None, **kwargs) -> None:
    content = b"" if body is None else json.dumps(body).encode()
    validate_request(
        method=method,
        path=path,
        query=kwargs.pop("query", []),
        headers=kwargs.pop("headers", SECRET),
        content=content,
        **kwargs,
    )


def answer(method: str, path: str, status: int, body: object) -> None:
    validate_answer(
        method=method, path=path, status=status, headers=JSON, content=json.dumps(body).encode()
    )


def test_valid_requests_pass():
    request("POST", "/sandbox/v1/agent/generate", {"prompt": "A coach", "model": "essence-2"})
    request("POST", "/v1/agent/A12BCD3456/add-context", {"context": "x", "type": "speak"})
    request("GET", "/v1/agents", query=[("limit", "20"), ("offset", "0"), ("status", "ready")])
    request("POST", "/v1/validate")
    request("POST", "/v1/runtime-tokens/request")  # its body is optional
    # NOTES.md's LiveKit dispatch fields, beyond the spec's schema.
    request("POST", "/v1/runtime-tokens/request", {"agent_id": "A12BCD3456", "livekit_url": "x"})


@pytest.mark.parametrize(
    ("method", "path", "body", "kwargs", "match"),
    [
        ("POST", "/v1/agent/generate", {"prompt": "x", "promt": "y"}, {}, "Additional prop"),
        ("POST", "/v1/agent/generate", {"model": "expression-9"}, {}, "is not one of"),
        ("POST", "/v1/agent/generate", {"transparency": "yes"}, {}, "is not of type"),
        ("POST", "/v1/agent/generate", None, {}, "required by the operation"),
        ("POST", "/v1/agent/A12BCD3456/speak", {"room_id": "r"}, {}, "'message' is a required"),
        ("POST", "/v1/webhooks", {"url": "u", "events": ["agent.deleted"]}, {}, "is not one of"),
        ("GET", "/v1/me", {"x": 1}, {}, "declares no request body"),
        ("GET", "/v1/agents", None, {"query": [("limit", "500")]}, "maximum"),
        ("GET", "/v1/agents", None, {"query": [("page", "2")]}, "not a parameter"),
        ("GET", "/v1/me", None, {"headers": JSON}, "api-secret: missing"),
        ("GET", "/v1/nothing", None, {}, "no operation"),
        ("PUT", "/v1/agent/A12BCD3456", None, {}, "declares no PUT"),
        ("POST", "/sandbox/control/clock", {"advance_seconds": 1}, {}, "no operation"),
    ],
)
def test_requests_off_the_contract_fail(method, path, body, kwargs, match):
    with pytest.raises(AssertionError, match=match):
        request(method, path, body, **kwargs)


def test_answers_off_the_contract_fail():
    answer("GET", "/v1/me", 429, _envelope(429, "RATE_LIMITED"))  # any call can be rate limited
    answer("POST", "/v1/agent/generate", 422, _envelope(422, "MODEL_SUBJECT_MISMATCH"))
    with pytest.raises(AssertionError, match="status 409 is not declared"):
        answer("GET", "/v1/me", 409, _envelope(409, "AGENT_NOT_READY"))
    with pytest.raises(AssertionError, match="getMe"):
        answer("GET", "/v1/me", 200, {"data": {"credit_balance": "lots"}})
    with pytest.raises(AssertionError, match="Additional properties"):
        answer("POST", "/v1/validate", 200, {"valid": True, "account": "x"})
    with pytest.raises(AssertionError, match="not JSON"):
        validate_answer(
            method="GET",
            path="/v1/me",
            status=200,
            headers=httpx.Headers({"content-type": "text/html"}),
            content=b"<html>",
        )


def test_every_broken_exchange_is_reported():
    good = Exchange(
        method="POST",
        path="/v1/validate",
        query=[],
        request_headers=SECRET,
        request_content=b"",
        status=200,
        response_headers=JSON,
        response_content=b'{"valid": true}',
    )
    bad = Exchange(
        method="POST",
        path="/v1/agent/A12BCD3456",
        query=[],
        request_headers=SECRET,
        request_content=b'{"prompt": "x"}',
        status=200,
        response_headers=JSON,
        response_content=b'{"agent_code": "A12BCD3456", "updated": "yes"}',
    )
    exchanges_check([good])
    with pytest.raises(AssertionError) as caught:
        exchanges_check([good, bad])
    report = str(caught.value)
    assert "#2 POST /v1/agent/A12BCD3456" in report
    assert "request of updateAgent" in report and "'prompt' was unexpected" in report
    assert "response of updateAgent" in report and "'yes' is not of type 'boolean'" in report


def _envelope(status: int, code: str) -> dict:
    return {
        "error": {"code": code, "message": "m", "httpStatus": status},
        "status": "error",
        "status_code": status,
    }
