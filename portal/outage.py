"""While the database is unreachable, answer 503 with a message and Retry-After, never 500.

PostgreSQL restarting or failing over makes every query raise OperationalError (or
InterfaceError on a connection it closed). `DatabaseOutageMiddleware` turns that into a 503:
the page `templates/503.html` (rendered without context processors, which query), or under
/api/ the API's error envelope with the code `service_unavailable`. interfaces/api.py maps the same
errors for the API itself (django-ninja handles exceptions before any middleware sees them).

- A view's error reaches `process_exception`, and the 503 goes out through every middleware
  (security headers, CSP, request id).
- An error raised by another middleware (a session saved after the view) has already become a
  500 when it reaches this middleware, placed early: `got_request_exception` marks the request,
  and the 500 is replaced, keeping its headers.

No process needs restarting afterwards: Django drops a connection that failed at the end of the
request (and CONN_HEALTH_CHECKS re-checks persistent ones before use), so the next request
connects again; Celery tasks retry (TASK_RETRY)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader

from portal.apisupport import error_response

DATABASE_ERRORS = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5

# Celery tasks sent for one piece of work (`@shared_task(**outage.TASK_RETRY)`): one that finds
# the database unreachable is retried after 1 s, doubling up to 30 s, for about five minutes.
# Beat-driven tasks need none of this: the next tick runs anyway.
TASK_RETRY: dict[str, Any] = {
    "autoretry_for": DATABASE_ERRORS,
    "retry_backoff": True,
    "retry_backoff_max": 30,
    "retry_jitter": False,
    "retry_kwargs": {"max_retries": 14},
}
CODE = "service_unavailable"
MESSAGE = (
    "The portal cannot reach its database for a moment (a restart or maintenance). "
    f"Try again in {RETRY_AFTER_SECONDS} seconds."
)
_MARK = "_database_outage"


def is_database_outage(error: BaseException | None) -> bool:
    return isinstance(error, DATABASE_ERRORS)


def outage_response(request: HttpRequest) -> HttpResponse:
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = api_outage_response()
    else:
        page = loader.get_template("503.html").render({"message": MESSAGE})
        response = HttpResponse(page, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def api_outage_response() -> JsonResponse:
    """The API's error envelope (portal.apisupport `error_response`) for a database outage."""
    return error_response(
        503,
        CODE,
        MESSAGE,
        {"retry_after": RETRY_AFTER_SECONDS},
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _mark_outage(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    # Sent while Django handles the exception: it is the one being handled.
    if request is not None and is_database_outage(sys.exc_info()[1]):
        setattr(request, _MARK, True)


class DatabaseOutageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from django.core.signals import got_request_exception

        self.get_response = get_response
        got_request_exception.connect(_mark_outage, dispatch_uid="portal.outage")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 500 and getattr(request, _MARK, False):
            replacement = outage_response(request)
            for name, value in response.items():
                if name.lower() not in ("content-type", "content-length"):
                    replacement.headers.setdefault(name, value)
            return replacement
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_database_outage(exception):
            return outage_response(request)
        return None
