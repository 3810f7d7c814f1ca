"""Structured logs: who and what every log line is about, in web requests and Celery tasks.

The context lives in contextvars (no thread-locals), filled by two sources:

- `RequestContextMiddleware`: a request id (the caller's `X-Request-ID` when it is well formed,
  else a new one; echoed in the response) and the request itself. The organization, user, API
  key and agent/session ids are read from the request *when a line is logged*, so lines logged
  after `tenancy.org_view` or the API authentication carry them. It logs one line per request.
- Celery signals: the publishing request's id travels in the task's headers; while a task runs,
  its id, name and the agent/session ids of its arguments are in the context.

`ContextFilter` copies the context onto every record; `JsonFormatter` writes one JSON object per
line (production, `LOG_FORMAT=json`), `PlainFormatter` a readable line (local runs). Only ids,
slugs and key prefixes are logged: never secrets, tokens, query strings, emails or bodies.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from celery import signals
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

logger = logging.getLogger("portal.request")

CONTEXT_FIELDS = (
    "request_id",
    "org",
    "user_id",
    "api_key",
    "task_id",
    "task",
    "agent_id",
    "session_id",
)
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "portal_log_context", default=None
)
_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar(
    "portal_log_request", default=None
)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
# URL parameters that are secrets themselves; their values never reach a log line.
SECRET_URL_KWARGS = frozenset({"token", "uidb64", "receiver_token"})
# Task arguments worth logging, by name, and the context field they fill.
TASK_ID_ARGUMENTS = {
    "agent_pk": "agent_id",
    "agent_id": "agent_id",
    "session_pk": "session_id",
    "session_id": "session_id",
}
# Extra attributes that look like secrets are replaced, whoever passed them.
_SECRET_NAME = re.compile(r"pass|secret|token|authorization|cookie|credential", re.IGNORECASE)
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)


def context_current() -> dict[str, Any]:
    """The context of the running request or task, for log lines (empty values left out)."""
    values = dict(_context.get() or {})
    request = _request.get()
    if request is not None:
        values.update(_request_values(request))
    return {k: v for k, v in values.items() if v not in (None, "")}


@contextmanager
def context_bind(**values: Any) -> Iterator[None]:
    """Add values to the log context for the duration of a block."""
    token = _context.set({**(_context.get() or {}), **values})
    try:
        yield
    finally:
        _context.reset(token)


def _request_values(request: HttpRequest) -> dict[str, Any]:
    values: dict[str, Any] = {}
    organization = getattr(request, "organization", None)
    if organization is not None:
        values["org"] = organization.slug
    # Only a user already loaded: a log line must never cause a query.
    user = getattr(request, "_cached_user", None)
    if user is not None and user.is_authenticated:
        values["user_id"] = user.pk
    api_key = getattr(request, "auth", None)
    if api_key is not None and hasattr(api_key, "prefix"):
        values["api_key"] = api_key.prefix
    match = getattr(request, "resolver_match", None)
    if match is not None:
        for name in ("agent_id", "session_id"):
            if name in match.kwargs:
                values[name] = str(match.kwargs[name])
    return values


def request_path_safe(request: HttpRequest) -> str:
    """The request's path with secret URL parameters masked (no query string)."""
    path = request.path
    match = getattr(request, "resolver_match", None)
    if match is None:  # answered before URL resolution (e.g. a bad Host header)
        try:
            match = resolve(request.path_info)
        except Resolver404:
            match = None
    if match is not None:
        for name in SECRET_URL_KWARGS & match.kwargs.keys():
            value = str(match.kwargs[name])
            if value:
                path = path.replace(value, "[redacted]")
    return path


class RequestContextMiddleware:
    """Give each request an id and a log context, and log one line when it is answered."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        context_token = _context.set({"request_id": request_id})
        request_token = _request.set(request)
        started = time.monotonic()
        try:
            response = self.get_response(request)
            # A response that names its own request (the sandbox imitating bitHuman's
            # X-Request-Id) keeps it.
            response.setdefault("X-Request-ID", request_id)
            level = logging.ERROR if response.status_code >= 500 else logging.INFO
            logger.log(
                level,
                "%s %s %s",
                request.method,
                request_path_safe(request),
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request_path_safe(request),
                    "status": response.status_code,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
            return response
        finally:
            _request.reset(request_token)
            _context.reset(context_token)


class ContextFilter(logging.Filter):
    """Put the current request/task context on every record (as attributes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Django's own lines (django.request, django.security) carry the request and its raw
        # path, which can hold a secret token: log the masked path, and never the object.
        request = vars(record).pop("request", None)
        if isinstance(request, HttpRequest) and isinstance(record.args, tuple):
            record.args = tuple(
                request_path_safe(request) if arg == request.path else arg for arg in record.args
            )
        values = context_current()
        for field in CONTEXT_FIELDS:
            if not hasattr(record, field):
                setattr(record, field, values.get(field))
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    extras = {}
    for key, value in vars(record).items():
        if key in _STANDARD_ATTRIBUTES or key in CONTEXT_FIELDS or key.startswith("_"):
            continue
        extras[key] = "[redacted]" if _SECRET_NAME.search(key) else value
    return extras


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value not in (None, ""):
                entry[field] = value
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """A readable line for local runs, with the non-empty context at the end in brackets."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(
            f"{field}={getattr(record, field)}"
            for field in CONTEXT_FIELDS
            if getattr(record, field, None) not in (None, "")
        )
        if not context:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} [{context}]{newline}{rest}"


# --- Celery: the same context in tasks ----------------------------------------------------------
# Connected when this module is imported, which Django's LOGGING does in every process (web,
# worker, beat) through the filter and formatters above.


@signals.setup_logging.connect
def _celery_keeps_django_logging(**kwargs: Any) -> None:
    """A receiver here tells Celery not to replace Django's LOGGING with its own handlers."""


@signals.before_task_publish.connect
def _task_publish_add_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    request_id = context_current().get("request_id")
    if headers is not None and request_id:
        headers.setdefault("portal_request_id", request_id)


_task_tokens: dict[str, contextvars.Token[dict[str, Any] | None]] = {}


@signals.task_prerun.connect
def _task_context_bind(
    task_id: str | None = None,
    task: Any = None,
    args: tuple[Any, ...] | None = None,
    kwargs: dict[str, Any] | None = None,
    **extra: Any,
) -> None:
    values: dict[str, Any] = {"task_id": task_id, "task": getattr(task, "name", None)}
    request = getattr(task, "request", None)
    request_id = getattr(request, "portal_request_id", None)
    if request_id is None and request is not None:
        request_id = (getattr(request, "headers", None) or {}).get("portal_request_id")
    values["request_id"] = request_id
    for name, value in (kwargs or {}).items():
        if name in TASK_ID_ARGUMENTS:
            values[TASK_ID_ARGUMENTS[name]] = value
    # Positional ids: look their names up in the task's signature.
    if args and task is not None:
        import inspect

        try:
            names = list(inspect.signature(task.run).parameters)
        except (TypeError, ValueError):
            names = []
        for name, value in zip(names, args, strict=False):
            if name in TASK_ID_ARGUMENTS:
                values[TASK_ID_ARGUMENTS[name]] = value
    if task_id:
        _task_tokens[task_id] = _context.set(values)


@signals.task_postrun.connect
def _task_context_reset(task_id: str | None = None, **kwargs: Any) -> None:
    token = _task_tokens.pop(task_id or "", None)
    if token is not None:
        try:
            _context.reset(token)
        except ValueError:  # set in another context (eager tasks nested in a request)
            _context.set(None)
