"""The REST API v1: the one NinjaAPI, each app's router imported explicitly, and the one mapping
of errors to the JSON envelope `{"error": {"code", "message", "details"}}` (portal.apisupport
builds the envelope; authentication, pagination and rate limits live there too)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from activity import api as activity_api
from agents import api as agents_api
from agents import usage_api
from organizations import api as organization_api
from portal import outage
from portal.apisupport import ApiError, ApiKeyAuth, api_error_for, error_response, upstream_error
from portal.bithuman import errors as bh_errors
from portal.errors import ApplicationError
from sessions import api as sessions_api
from sessions import live_api as live_sessions_api

logger = logging.getLogger(__name__)

# --- The API ------------------------------------------------------------------------------------

api = NinjaAPI(
    title="bitHuman Portal API",
    version="1",
    description=(
        "Create bitHuman avatar agents and drive live sessions for one organization. "
        "Authenticate with an organization API key: `Authorization: Bearer bhp_...`."
    ),
    auth=ApiKeyAuth(),
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


@api.exception_handler(ApplicationError)
def _domain_error(request: HttpRequest, exc: ApplicationError) -> HttpResponse:
    """Every domain error an operation lets through, by its kind (portal.errors): operations
    call the services and leave the answer to this one mapping."""
    return _api_error(request, api_error_for(exc))


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_response(
        401,
        "unauthenticated",
        "Send a valid, unrevoked, unexpired API key: `Authorization: Bearer bhp_...`.",
        headers={"WWW-Authenticate": "Bearer"},
    )


@api.exception_handler(NinjaValidationError)
def _validation(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    fields: dict[str, list[str]] = {}
    wrappers = {"body", "payload", "query", "path", "filters"}
    for error in exc.errors:
        parts = [str(part) for part in error.get("loc", []) if part not in wrappers]
        name = ".".join(parts) or "body"
        fields.setdefault(name, []).append(str(error.get("msg", "Invalid value.")))
    return error_response(422, "validation_error", "The request is not valid.", {"fields": fields})


@api.exception_handler(RequestDataTooBig)
def _too_large(request: HttpRequest, exc: Exception) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_response(
        413,
        "payload_too_large",
        f"The request body is larger than {limit:,} bytes.",
        {"limit_bytes": limit},
    )


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_response(404, "not_found", "Not found.")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    codes = {400: "validation_error", 401: "unauthenticated", 403: "forbidden", 404: "not_found"}
    code = codes.get(exc.status_code, "conflict" if exc.status_code == 409 else "error")
    return error_response(exc.status_code, code, str(exc))


@api.exception_handler(bh_errors.BithumanError)
def _bithuman_error(request: HttpRequest, exc: bh_errors.BithumanError) -> HttpResponse:
    error = upstream_error(exc)
    return error_response(error.status, error.code, error.message, error.details, error.headers)


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def _database_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    """The database is unreachable (a restart): 503 and Retry-After, as for pages (outage.py)."""
    return outage.api_outage_response()


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("Unhandled API error on %s %s", request.method, request.path)
    return error_response(500, "internal_error", "Something went wrong on our side.")


api.add_router("/organization", organization_api.router)
api.add_router("/agents", agents_api.router)
api.add_router("/agents", sessions_api.agent_router)
api.add_router("/sessions", sessions_api.router)
api.add_router("/live-sessions", live_sessions_api.router)
api.add_router("/audit-events", activity_api.router)
api.add_router("/usage", usage_api.router)


def api_index(request: HttpRequest) -> HttpResponse:
    """Where integrators start: links to the docs and the schema."""
    return JsonResponse(
        {
            "name": "bitHuman Portal API",
            "version": "1",
            "docs": request.build_absolute_uri("/api/v1/docs"),
            "openapi": request.build_absolute_uri("/api/v1/openapi.json"),
        }
    )


def api_not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Unknown paths under /api/v1/ answer the JSON envelope, never an HTML page."""
    return error_response(404, "not_found", "No such API endpoint.")
