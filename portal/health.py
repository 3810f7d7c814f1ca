"""Health endpoints for load balancers, orchestrators and the compose health checks.

- `/healthz`: the process answers (no dependency is touched): restart the container if not.
- `/readyz`: the database, the cache (Redis in production), the Celery broker are reachable and
  every migration is applied: send traffic only if so. JSON with each check's result; 503 when
  one fails.

`HealthCheckMiddleware` answers both paths first thing, before host validation and the HTTPS
redirect: probes come from inside the private network, by IP address and over plain HTTP. The
same views are also routed in `interfaces/urls.py`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 3.0
# Migrations applied once stay applied for this process's code: check until they are.
_migrations_applied = False


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "ok", timeout=10)
    if cache.get(key) != "ok":
        raise RuntimeError("the cache did not return the value just written")
    cache.delete(key)


def _check_broker() -> None:
    from portal.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_SECONDS)


def _check_migrations() -> None:
    global _migrations_applied
    if _migrations_applied:
        return
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        raise RuntimeError(f"{len(plan)} migrations not applied")
    _migrations_applied = True


CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "cache": _check_cache,
    "broker": _check_broker,
    "migrations": _check_migrations,
}


def _run(name: str, check: Callable[[], None]) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {"ok": True}
    try:
        check()
    except Exception as error:
        # The exception's class only: messages can carry host names or connection strings.
        logger.warning("Readiness check %s failed: %r", name, error)
        result = {"ok": False, "error": type(error).__name__}
        if name == "migrations" and isinstance(error, RuntimeError):
            result["error"] = str(error)
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


@require_safe
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@require_safe
@never_cache
def readyz(request: HttpRequest) -> HttpResponse:
    checks = {name: _run(name, check) for name, check in CHECKS.items()}
    ready = all(result["ok"] for result in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


PATHS: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/healthz": healthz, "/readyz": readyz}


class HealthCheckMiddleware:
    """Answer /healthz and /readyz before anything else (see the module's docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = PATHS.get(request.path_info)
        if view is not None and request.method in ("GET", "HEAD"):
            return view(request)
        return self.get_response(request)
