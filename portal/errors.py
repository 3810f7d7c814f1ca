"""The domain errors. Each carries its kind, decided once where it is raised; the API maps kinds
to statuses in one place (portal.apisupport.api_error_for, installed by interfaces/api.py) and
pages in one helper (portal.forms.error_show).

| kind               | class             | API status | default code        |
|--------------------|-------------------|------------|---------------------|
| `invalid`          | ApplicationError  | 422        | `validation_error`  |
| `not_found`        | NotFound          | 404        | `not_found`         |
| `conflict`         | Conflict          | 409        | `conflict`          |
| `forbidden`        | Forbidden         | 403        | `forbidden`         |
| `upstream_refused` | UpstreamRefused   | 409        | `upstream_rejected` |
| `upstream_failed`  | UpstreamFailed    | 502        | `upstream_error`    |
| `rate_limited`     | RateLimited       | 429        | `rate_limited`      |

`ApplicationError(message, field=...)` itself is "invalid": a field error for forms and the API.
`code=` names a more precise code of the same kind (`agent_not_ready` is a conflict). NotFound is
also Django's Http404 and Forbidden its PermissionDenied, so a page that does not catch them
answers 404 or 403 like any other page.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from django.core.exceptions import PermissionDenied
from django.http import Http404


class ErrorKind(StrEnum):
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    UPSTREAM_REFUSED = "upstream_refused"
    UPSTREAM_FAILED = "upstream_failed"
    RATE_LIMITED = "rate_limited"


class ApplicationError(Exception):
    """A rule of the domain said no: `message` for people, `field` when one input is at fault,
    `code` for the API (stable, snake_case), `extra` for facts (e.g. `upstream_status`)."""

    kind: ClassVar[ErrorKind] = ErrorKind.INVALID
    default_code: ClassVar[str] = "validation_error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code or self.default_code
        self.extra = extra or {}


class NotFound(ApplicationError, Http404):
    """Missing, archived, or another organization's: all answer the same."""

    kind = ErrorKind.NOT_FOUND
    default_code = "not_found"

    def __init__(self, message: str = "Not found.", **kwargs: Any):
        super().__init__(message, **kwargs)


class Conflict(ApplicationError):
    """The object's state does not allow it now (an agent not ready, a session ended)."""

    kind = ErrorKind.CONFLICT
    default_code = "conflict"


class Forbidden(ApplicationError, PermissionDenied):
    """The actor may not (a role too low, a suspended organization)."""

    kind = ErrorKind.FORBIDDEN
    default_code = "forbidden"


class RateLimited(ApplicationError):
    """Too many attempts: ours (a throttle) or bitHuman's. `retry_after` in seconds."""

    kind = ErrorKind.RATE_LIMITED
    default_code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        if retry_after is not None:
            self.extra.setdefault("retry_after", retry_after)


class UpstreamRefused(ApplicationError):
    """bitHuman refused the request (a 4xx other than 429)."""

    kind = ErrorKind.UPSTREAM_REFUSED
    default_code = "upstream_rejected"


class UpstreamFailed(ApplicationError):
    """bitHuman failed or could not be reached (5xx, a timeout, a broken answer)."""

    kind = ErrorKind.UPSTREAM_FAILED
    default_code = "upstream_error"


def upstream_failure(
    error: Any, message: str, *, field: str | None = None
) -> RateLimited | UpstreamRefused | UpstreamFailed:
    """A bitHuman error (portal.bithuman.errors.BithumanError: `http_status`, `retry_after`,
    `code`, `request_id`) as the domain error of its kind: 429 RATE_LIMITED rate limited, other
    4xx refused (a 429 SESSION_LIMIT too: waiting does not help, a session ending does; a
    suspended account as `bithuman_account_suspended`), the rest failed. bitHuman's request id
    rides along in `extra` (`upstream_request_id`) for its support."""
    status = getattr(error, "http_status", None)
    retry_after = getattr(error, "retry_after", None)
    upstream_code = getattr(error, "code", None)
    extra: dict[str, Any] = {"upstream_status": status}
    request_id = getattr(error, "request_id", None)
    if request_id:
        extra["upstream_request_id"] = request_id
    if upstream_code in UPSTREAM_CODES:
        return UpstreamRefused(
            message, field=field, code=UPSTREAM_CODES[upstream_code], extra=extra
        )
    if status == 429:
        return RateLimited(message, field=field, retry_after=retry_after, extra=extra)
    if isinstance(status, int) and 400 <= status < 500:
        return UpstreamRefused(message, field=field, extra=extra)
    return UpstreamFailed(message, field=field, extra=extra)


# bitHuman codes that keep their own API code (a refusal, whatever their HTTP status).
UPSTREAM_CODES = {
    "SESSION_LIMIT": "session_limit",
    "ACCOUNT_SUSPENDED": "bithuman_account_suspended",
}
