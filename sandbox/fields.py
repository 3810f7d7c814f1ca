"""Reading request bodies and query strings, with bitHuman's 400 answers for wrong shapes."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from sandbox.errors import SandboxError, invalid, missing_param


def body_object(request: HttpRequest, *, required: bool = True) -> dict[str, Any]:
    """The JSON object in the request body ({} for an empty optional body)."""
    try:
        raw = request.body
    except RequestDataTooBig:
        raise SandboxError(413, "FILE_TOO_LARGE", "Request body too large") from None
    if not raw.strip():
        if required:
            raise invalid("Request body must be a JSON object")
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid("Malformed JSON body") from None
    if not isinstance(data, dict):
        raise invalid("Request body must be a JSON object")
    return data


def field_str(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise missing_param(name)
        return None
    if not isinstance(value, str):
        raise invalid(f"Field '{name}' must be a string")
    if required and not value.strip():
        raise missing_param(name)
    return value


def field_bool(body: dict[str, Any], name: str, *, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"Field '{name}' must be a boolean")
    return value


def field_choice(
    body: dict[str, Any], name: str, *, choices: tuple[str, ...], default: str | None = None
) -> str | None:
    value = field_str(body, name)
    if value is None:
        return default
    if value not in choices:
        raise invalid(f"Invalid {name} '{value}'; must be one of: {', '.join(choices)}")
    return value


def field_number(body: dict[str, Any], name: str, *, minimum: float, maximum: float) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"Field '{name}' must be a number")
    if not minimum <= value <= maximum:
        raise invalid(f"Field '{name}' must be between {minimum:g} and {maximum:g}")
    return float(value)


def query_int(request: HttpRequest, name: str, *, default: int, minimum: int, maximum: int) -> int:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"Query parameter '{name}' must be an integer") from None
    if not minimum <= value <= maximum:
        raise invalid(f"Query parameter '{name}' must be between {minimum} and {maximum}")
    return value
