"""The HTTP edge of the sandbox API: envelopes, the request pipeline and body parsing.

Every bitHuman endpoint goes through `api_endpoint`, in this order: authentication (401, and
ACCOUNT_SUSPENDED), simulated latency, forced 429s, the account's token bucket (429), injected
errors (503), a session start's SESSION_LIMIT (429), the handler. Every answer carries an
`X-Request-Id`. A `SandboxError` from anywhere becomes bitHuman's error envelope; nothing leaks
a 500 page.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from sandbox import services
from sandbox.errors import SandboxError
from sandbox.models import SandboxAccount

logger = logging.getLogger(__name__)

Handler = Callable[..., HttpResponse]


def error_response(error: SandboxError) -> JsonResponse:
    response = JsonResponse(
        {
            "error": {"code": error.code, "message": error.message, "httpStatus": error.status},
            "status": "error",
            "status_code": error.status,
        },
        status=error.status,
    )
    for name, value in error.headers.items():
        response[name] = value
    return response


def not_found_response() -> JsonResponse:
    """What an unknown route answers (the API's framework default)."""
    return JsonResponse({"detail": "Not Found"}, status=404)


def method_not_allowed_response() -> JsonResponse:
    return JsonResponse({"detail": "Method Not Allowed"}, status=405)


def api_secret(request: HttpRequest) -> str:
    return request.headers.get("api-secret", "").strip()


def account_authenticate(request: HttpRequest) -> SandboxAccount:
    secret = api_secret(request)
    if not secret:
        raise SandboxError(401, "MISSING_AUTH", "Missing api-secret header")
    account = services.sandbox_account_for_secret(secret=secret)
    if account is None:
        raise SandboxError(401, "UNAUTHORIZED", "Invalid API secret")
    if account.suspended:
        raise SandboxError(401, "ACCOUNT_SUSPENDED", "This account is suspended")
    return account


def request_id_new() -> str:
    """The X-Request-Id of one answer (api/rate-limits.md: "include it in support reports")."""
    return "req_" + uuid.uuid4().hex


def api_endpoint(
    bucket: str | None, *, faults: bool = True, session_start: bool = False
) -> Callable[[Handler], Handler]:
    """Wrap a handler `(request, account, **url_kwargs)`.

    `bucket` None skips rate limiting; `faults=False` (the sandbox's control API) also skips
    latency and injected errors; `session_start` answers 429 SESSION_LIMIT while the account's
    `session_limit` knob is on. Every answer carries an X-Request-Id.
    """

    def decorator(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            limit_headers: dict[str, str] = {}
            try:
                account = account_authenticate(request)
                if faults:
                    latency = services.knob_latency_ms(account=account)
                    if latency:
                        time.sleep(latency / 1000)
                    services.fault_forced_429_check(account=account)
                if bucket is not None:
                    limit = services.rate_limit_consume(account=account, bucket=bucket)
                    limit_headers = limit.headers() if limit else {}
                if faults:
                    services.fault_error_check(account=account)
                if session_start and account.session_limit:
                    # Capacity in use: no Retry-After, since no clock frees a session.
                    raise SandboxError(
                        429,
                        "SESSION_LIMIT",
                        "Concurrent session limit reached for this account. Wait for an "
                        "active session to end, then retry.",
                    )
                response = handler(request, account, **kwargs)
            except SandboxError as error:
                response = error_response(error)
            except (OperationalError, InterfaceError):
                # Its own database unreachable (a restart): bitHuman's transient answer, 503
                # NO_AVAILABLE_WORKERS (api/errors.md: retry with backoff), not a 500.
                logger.warning("Sandbox database unreachable: answering 503")
                response = error_response(
                    SandboxError(503, "NO_AVAILABLE_WORKERS", "All workers busy, retry later")
                )
            except Exception:
                # The real API answers its envelope even for its own bugs; log ours loudly.
                logger.exception("Sandbox handler failed")
                response = error_response(
                    SandboxError(500, "INTERNAL_ERROR", "Internal server error")
                )
            for name, value in limit_headers.items():
                response.setdefault(name, value)
            response["X-Request-Id"] = request_id_new()
            return response

        return csrf_exempt(view)

    return decorator


def method_router(**handlers: Handler) -> Handler:
    """One URL, one handler per HTTP method; other methods answer 405."""

    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        handler = handlers.get(request.method or "")
        if handler is None:
            return method_not_allowed_response()
        return handler(request, **kwargs)

    return view


def json_response(payload: dict[str, Any], *, status: int = 200) -> JsonResponse:
    return JsonResponse(payload, status=status)
