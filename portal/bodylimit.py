"""Request body limits, enforced from `Content-Length` before anything reads the body (CSRF,
sessions, authentication, the view): an oversized body is refused with 413 unread.

Only the routes that take media accept large bodies (`DATA_UPLOAD_MAX_MEMORY_SIZE`, 85 MiB: a
10 MB image and a 50 MB voice sample, base64-encoded in JSON): the new-agent form, the API's
agent create, and the sandbox's generate (bitHuman's, which takes the same media). Every other
route takes at most `REQUEST_BODY_MAX_SIZE` (1 MiB). Retrying an agent reuses its stored files
and takes no upload. A body without `Content-Length` (chunked) is not read by Django at all.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.urls import Resolver404, resolve

# URL names (namespace:name) of the routes that take media uploads.
MEDIA_ROUTES = frozenset(
    {
        "agent_new",
        "api:agent_create",
        "api:agent_create_multipart",
        "sandbox:agent_generate",
        "sandbox:file_upload",
    }
)


def body_limit(request: HttpRequest) -> int:
    """The largest body this request's route accepts."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return int(settings.REQUEST_BODY_MAX_SIZE)
    if match.view_name in MEDIA_ROUTES:
        return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    return int(settings.REQUEST_BODY_MAX_SIZE)


def too_large_response(request: HttpRequest, limit: int) -> HttpResponse:
    """413 in the caller's language: the API's envelope, bitHuman's for the sandbox, a page."""
    message = f"The request body is larger than {limit:,} bytes."
    if request.path.startswith("/api/"):
        return JsonResponse(
            {
                "error": {
                    "code": "payload_too_large",
                    "message": message,
                    "details": {"limit_bytes": limit},
                }
            },
            status=413,
        )
    if request.path.startswith("/sandbox/"):
        return JsonResponse(
            {"success": False, "error": {"code": "FILE_TOO_LARGE", "message": message}},
            status=413,
        )
    page = loader.get_template("413.html").render({"limit": limit, "megabytes": limit / 1e6})
    return HttpResponse(page, status=413)


class RequestBodyLimitMiddleware:
    """Refuse a body over its route's limit from its declared length, before it is read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # Django reads no body it cannot size
        if length > settings.REQUEST_BODY_MAX_SIZE:
            limit = body_limit(request)
            if length > limit:
                return too_large_response(request, limit)
        return self.get_response(request)
