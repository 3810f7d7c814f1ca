"""Both halves of the contract: what the client sends and what the sandbox answers.

`tests/sandbox/openapi.py` checks response bodies; this module adds the request side and the
rules that make a recorded exchange part of the contract at all:

- the operation (method + path template) must be in openapi.yaml: an unknown route or an
  undeclared method is a failure, not the "404 {detail}" the sandbox checker tolerates;
- the request body must validate against the operation's `requestBody` schema, **strictly** (a
  property the schema does not name is an error, so a misspelt field cannot slip through), and a
  request with no declared body must send none; query parameters must be declared and valid;
  every request carries the `api-secret` header the spec's global security requires;
- the response status must be declared by the operation, or be one of the errors NOTES.md says
  any call can meet (`GLOBAL_ERROR_STATUSES`), and its JSON body must validate (delegated to
  `tests.sandbox.openapi.validate_response`: strict schemas, the error envelope).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from tests.sandbox.openapi import (
    SANDBOX_PREFIX,
    _format_checker,
    _inline,
    _strict,
    operation_for,
    spec,
    validate_response,
)

# Statuses NOTES.md says every call can answer, though most operations do not list them:
# 401 (every call authenticates: MISSING_AUTH, UNAUTHORIZED, ACCOUNT_SUSPENDED), 429 (every
# call spends a rate-limit bucket) and 5xx (INTERNAL_ERROR; NO_AVAILABLE_WORKERS "retry up to
# 5 times"). Their bodies must still be bitHuman's error envelope.
GLOBAL_ERROR_STATUSES = frozenset({401, 429, 500, 503})

# Request fields NOTES.md documents beyond openapi.yaml's requestBody schema. The runtime-token
# request that dispatches an avatar into a LiveKit room sends `livekit_url`, `livekit_token`,
# `room_name`, `agent_id`, `model` ("Live rooms" in NOTES.md); the spec's schema names only
# agent_code, billing_type, room_name, user_id, fingerprint.
NOTES_REQUEST_FIELDS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/runtime-tokens/request"): {
        "agent_id": {"type": "string"},
        "livekit_url": {"type": "string"},
        "livekit_token": {"type": "string"},
        "model": {"type": "string"},
    },
}

SECRET_HEADER = "api-secret"


def spec_path(path: str) -> str:
    """The API path as openapi.yaml writes it (the sandbox is mounted at /sandbox)."""
    return path[len(SANDBOX_PREFIX) :] if path.startswith(SANDBOX_PREFIX) else path


def operation_find(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """(path template, operation) for a request, or AssertionError: not in the spec."""
    found = operation_for(method, spec_path(path))
    assert found is not None, f"{method} {path}: no operation in openapi.yaml has this path"
    template, operation = found
    assert operation is not None, (
        f"{method} {path}: openapi.yaml declares no {method} on {template}"
    )
    return template, operation


def _label(method: str, template: str, operation: dict[str, Any]) -> str:
    return f"{operation.get('operationId', '?')} ({method} {template})"


@functools.cache
def request_schema(method: str, template: str) -> tuple[bool, dict[str, Any] | None]:
    """(body required, strict JSON schema) of the operation's requestBody; schema None: no body."""
    operation = spec()["paths"][template][method.lower()]
    body = operation.get("requestBody")
    if body is None:
        return False, None
    body = _inline(body, spec())
    schema = body.get("content", {}).get("application/json", {}).get("schema")
    assert schema is not None, f"{method} {template}: requestBody has no application/json schema"
    extra = NOTES_REQUEST_FIELDS.get((method, template))
    if extra:
        schema = {**schema, "properties": {**schema.get("properties", {}), **extra}}
    return bool(body.get("required", False)), _strict(schema)


def _problems(schema: dict[str, Any], instance: Any) -> list[str]:
    validator = Draft202012Validator(schema, format_checker=_format_checker)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<body>'}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


def _query_value(schema: dict[str, Any], raw: str) -> Any:
    """A query string value as the type its schema declares (so `limit=20` checks as 20)."""
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
    except ValueError:
        return raw
    if kind == "boolean" and raw in ("true", "false"):
        return raw == "true"
    return raw


def _parameters(operation: dict[str, Any], location: str) -> dict[str, dict[str, Any]]:
    params = _inline(operation.get("parameters", []), spec())
    return {p["name"]: p for p in params if p.get("in") == location}


def validate_request(
    *,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: httpx.Headers,
    content: bytes,
    secret_required: bool = True,
) -> None:
    """Raise AssertionError, listing every problem, unless the request honours the contract."""
    template, operation = operation_find(method, path)
    label = _label(method, template, operation)
    problems: list[str] = []
    if secret_required and not headers.get(SECRET_HEADER, "").strip():
        problems.append(f"header {SECRET_HEADER}: missing (the spec's security requires it)")
    declared_query = _parameters(operation, "query")
    for name, raw in query:
        param = declared_query.get(name)
        if param is None:
            problems.append(f"query {name}: not a parameter of this operation")
            continue
        schema = _strict(param.get("schema", {}))
        problems += [f"query {p}" for p in _problems(schema, _query_value(schema, raw))]
    for name, param in declared_query.items():
        if param.get("required") and name not in dict(query):
            problems.append(f"query {name}: required")
    for name, param in _parameters(operation, "header").items():
        if param.get("required") and name not in headers:
            problems.append(f"header {name}: required")
        elif name in headers:
            schema = _strict(param.get("schema", {}))
            problems += [f"header {p}" for p in _problems(schema, headers[name])]
    required, schema = request_schema(method, template)
    if schema is None:
        if content:
            problems.append(f"body: the operation declares no request body, got {content[:80]!r}")
    elif not content:
        if required:
            problems.append("body: required by the operation, none sent")
    else:
        content_type = headers.get("content-type", "")
        if not content_type.startswith("application/json"):
            problems.append(f"body: Content-Type {content_type!r}, the spec wants application/json")
        try:
            body = json.loads(content)
        except ValueError:
            problems.append(f"body: not JSON: {content[:80]!r}")
        else:
            problems += _problems(schema, body)
    assert not problems, f"request of {label} breaks openapi.yaml:\n  " + "\n  ".join(problems)


def validate_answer(*, method: str, path: str, status: int, headers: httpx.Headers, content: bytes):
    """Raise AssertionError unless the status is the operation's and the body its schema."""
    template, operation = operation_find(method, path)
    label = _label(method, template, operation)
    declared = {str(code) for code in operation.get("responses", {})}
    assert str(status) in declared or "default" in declared or status in GLOBAL_ERROR_STATUSES, (
        f"response of {label}: status {status} is not declared (declared: {sorted(declared)})"
    )
    content_type = headers.get("content-type", "")
    assert content_type.startswith("application/json"), (
        f"response of {label} -> {status}: Content-Type {content_type!r}, not JSON"
    )
    try:
        body = json.loads(content)
    except ValueError:
        raise AssertionError(
            f"response of {label} -> {status}: not JSON: {content[:80]!r}"
        ) from None
    try:
        validate_response(method, spec_path(path), status, body)
    except AssertionError as error:
        raise AssertionError(f"response of {label}: {error}") from None


@dataclass(frozen=True)
class Exchange:
    """One request the client sent and the answer it got, as raw as they travelled."""

    method: str
    path: str
    query: list[tuple[str, str]]
    request_headers: httpx.Headers
    request_content: bytes
    status: int
    response_headers: httpx.Headers
    response_content: bytes
    secret_required: bool = True
    request_checked: bool = True

    @property
    def operation_id(self) -> str:
        _, operation = operation_find(self.method, self.path)
        return str(operation.get("operationId"))

    def json(self) -> Any:
        return json.loads(self.response_content)

    def request_json(self) -> Any:
        return json.loads(self.request_content) if self.request_content else None

    def problems(self) -> list[str]:
        """Every way this exchange breaks the contract (empty when it honours it)."""
        found = []
        checks = (self._request_check, self._answer_check)
        for check in checks if self.request_checked else checks[1:]:
            try:
                check()
            except AssertionError as error:
                found.append(str(error))
        return found

    def _request_check(self) -> None:
        validate_request(
            method=self.method,
            path=self.path,
            query=self.query,
            headers=self.request_headers,
            content=self.request_content,
            secret_required=self.secret_required,
        )

    def _answer_check(self) -> None:
        validate_answer(
            method=self.method,
            path=self.path,
            status=self.status,
            headers=self.response_headers,
            content=self.response_content,
        )


class RecordingTransport(httpx.BaseTransport):
    """An httpx transport that sends through a real one and records every exchange.

    `secret_required=False` is for the one test that sends no secret on purpose (MISSING_AUTH);
    `request_checked=False` for the one that sends a field the spec removed on purpose
    (VIDEO_INPUT_NOT_SUPPORTED). Their answers are checked all the same.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        secret_required: bool = True,
        request_checked: bool = True,
    ):
        self.inner = inner or httpx.HTTPTransport()
        self.secret_required = secret_required
        self.request_checked = request_checked
        self.exchanges: list[Exchange] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()
        response = self.inner.handle_request(request)
        # Read here so the body is recorded; the client then reuses the read content.
        response.read()
        self.exchanges.append(
            Exchange(
                method=request.method,
                path=request.url.path,
                query=list(request.url.params.multi_items()),
                request_headers=request.headers,
                request_content=content,
                status=response.status_code,
                response_headers=response.headers,
                response_content=response.content,
                secret_required=self.secret_required,
                request_checked=self.request_checked,
            )
        )
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncRecordingTransport(httpx.AsyncBaseTransport):
    """The asynchronous twin of RecordingTransport (for AsyncBithumanClient)."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None):
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.exchanges.append(
            Exchange(
                method=request.method,
                path=request.url.path,
                query=list(request.url.params.multi_items()),
                request_headers=request.headers,
                request_content=content,
                status=response.status_code,
                response_headers=response.headers,
                response_content=response.content,
            )
        )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def exchanges_check(exchanges: list[Exchange]) -> None:
    """AssertionError naming every exchange that breaks the contract, each with its reasons."""
    report = []
    for number, exchange in enumerate(exchanges, start=1):
        for problem in exchange.problems():
            report.append(
                f"#{number} {exchange.method} {exchange.path} -> {exchange.status}: {problem}"
            )
    assert not report, "the client and the sandbox drifted from openapi.yaml:\n" + "\n".join(report)
