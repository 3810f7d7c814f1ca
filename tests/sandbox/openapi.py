"""Check sandbox answers against bitHuman's openapi.yaml, the contract.

`assert_valid(response)` takes an httpx response from the sandbox and:

- finds the operation for its method and path (the `/sandbox` mount stripped; literal paths win
  over templated ones, as in the real router);
- validates the JSON body against the schema the operation declares for that status, with
  jsonschema (Draft 2020-12, which OpenAPI 3.1 uses), **strictly**: a property the schema does
  not name is an error, so the sandbox cannot invent fields. `$ref`s are inlined, `allOf`
  merged and OpenAPI 3.0's `nullable` honoured;
- requires bitHuman's error envelope (`components/schemas/Error`) for a status the operation
  does not declare or declares without a body (429, 402, 503, ...), and for every error body
  checks that `error.httpStatus == status_code == the HTTP status`;
- requires exactly `404 {"detail": "Not Found"}` for a path no operation matches, and
  `405 {"detail": "Method Not Allowed"}` for a known path with an undeclared method.

The spec is read from $BITHUMAN_OPENAPI, else from the copy vendored in the repository
(vendor/bithuman/openapi.yaml; vendor/bithuman/SOURCE.md says where it comes from).
"""

from __future__ import annotations

import functools
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from jsonschema import Draft202012Validator, FormatChecker

VENDORED_SPEC = Path(__file__).resolve().parents[2] / "vendor" / "bithuman" / "openapi.yaml"
# What the markdown pages document beyond openapi.yaml (the pages win where they disagree).
DOCS_SPEC = Path(__file__).resolve().parent / "docs_spec.yaml"
SANDBOX_PREFIX = "/sandbox"
_SKIP_KEYS = {"example", "examples", "description", "x-codeSamples"}


def spec_path() -> Path:
    configured = os.environ.get("BITHUMAN_OPENAPI")
    if configured:
        return Path(configured)
    return VENDORED_SPEC


@functools.cache
def spec() -> dict[str, Any]:
    with spec_path().open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    with DOCS_SPEC.open(encoding="utf-8") as handle:
        docs = yaml.safe_load(handle)
    for name, schema in docs["components"]["schemas"].items():
        document["components"]["schemas"].setdefault(name, schema)
    document["paths"].update(docs["paths"])
    delivery = {"$ref": "#/components/schemas/ContextDelivery"}
    for patch in docs["responses_patch"]:
        response = document["paths"][patch["path"]][patch["method"]]["responses"][patch["status"]]
        response["content"]["application/json"]["schema"] = delivery
    return document


def _pointer(root: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"Only local $refs are supported: {ref}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _inline(node: Any, root: dict[str, Any]) -> Any:
    """The schema with $refs inlined, allOf merged and `nullable: true` as a null type."""
    if isinstance(node, list):
        return [_inline(item, root) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _inline(_pointer(root, node["$ref"]), root)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SKIP_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _inline(sub, root) for name, sub in value.items()}
        else:
            out[key] = _inline(value, root)
    if "allOf" in out:
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for part in out.pop("allOf"):
            merged["properties"].update(part.get("properties", {}))
            merged["required"] += part.get("required", [])
        out = {**merged, **out}
        if not out["required"]:
            del out["required"]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _strict(schema: Any) -> Any:
    """Forbid properties the schema does not name (open `type: object` maps stay open)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items() if key != "properties"}
    if "properties" in schema:
        out["properties"] = {name: _strict(sub) for name, sub in schema["properties"].items()}
        out.setdefault("additionalProperties", False)
    return out


_format_checker = FormatChecker()


@_format_checker.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.tzinfo is not None


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    pattern = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{pattern}$")


@functools.cache
def _routes() -> list[tuple[str, re.Pattern[str]]]:
    templates = list(spec()["paths"])
    # Literal paths first (/v1/agent/generate before /v1/agent/{code}), as a router matches them.
    templates.sort(key=lambda t: (t.count("{"), -len(t)))
    return [(t, _template_regex(t)) for t in templates]


def operation_for(method: str, path: str) -> tuple[str, dict[str, Any] | None] | None:
    """(path template, the operation or None for an undeclared method), or None: unknown path."""
    for template, regex in _routes():
        if regex.match(path):
            item = spec()["paths"][template]
            return template, item.get(method.lower())
    return None


def error_schema() -> dict[str, Any]:
    return _strict(_inline(spec()["components"]["schemas"]["Error"], spec()))


def response_schema(operation: dict[str, Any], status: int) -> dict[str, Any] | None:
    """The JSON schema the operation declares for this status, or None (no body declared)."""
    declared = operation.get("responses", {})
    response = declared.get(str(status)) or declared.get("default")
    if response is None:
        return None
    response = _inline(response, spec())
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    return _strict(schema) if schema else None


def _errors(schema: dict[str, Any], body: Any) -> list[str]:
    validator = Draft202012Validator(schema, format_checker=_format_checker)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<body>'}: {error.message}"
        for error in validator.iter_errors(body)
    ]


def validate_response(method: str, path: str, status: int, body: Any) -> None:
    """Raise AssertionError, listing every problem, unless the answer honours the contract."""
    if path.startswith(SANDBOX_PREFIX):
        path = path[len(SANDBOX_PREFIX) :]
    found = operation_for(method, path)
    where = f"{method} {path} -> {status}"
    if found is None:
        assert (status, body) == (404, {"detail": "Not Found"}), f"{where}: unknown route {body}"
        return
    template, operation = found
    if operation is None:
        assert (status, body) == (405, {"detail": "Method Not Allowed"}), f"{where}: {body}"
        return
    if isinstance(body, dict) and "error" in body:
        assert body.get("status") == "error", f"{where}: envelope status {body}"
        assert body.get("status_code") == status, f"{where}: status_code {body}"
        assert body["error"].get("httpStatus") == status, f"{where}: httpStatus {body}"
    schema = response_schema(operation, status)
    if schema is None:
        assert status >= 400, f"{where}: {template} declares no body for a success"
        schema = error_schema()
        assert isinstance(body, dict) and "error" in body, f"{where}: not an envelope: {body}"
    problems = _errors(schema, body)
    assert not problems, f"{where} breaks openapi.yaml ({template}):\n  " + "\n  ".join(problems)


def assert_valid(response: httpx.Response) -> httpx.Response:
    """Validate a sandbox answer to a /sandbox/v1/... request; return it for chaining."""
    body = response.json()
    validate_response(
        response.request.method, response.request.url.path, response.status_code, body
    )
    return response
