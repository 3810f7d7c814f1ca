"""System checks of the portal's own deployment rules (`manage.py check --deploy`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def sandbox_not_in_production(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The sandbox answers any `sbx_` secret and has a control API that moves clocks and sets
    faults: never serve it silently where DEBUG is off."""
    if settings.SANDBOX_ENABLED and not settings.DEBUG:
        return [
            Warning(
                "SANDBOX_ENABLED is true while DEBUG is false: the bitHuman simulator and its "
                "control API are served at /sandbox/ in production.",
                hint="Unset SANDBOX_ENABLED (it defaults to DJANGO_DEBUG) unless this is a "
                "staging deployment that needs it.",
                id="portal.W001",
            )
        ]
    return []


@register(Tags.caches, Tags.compatibility)
def shared_state_in_production(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Without DEBUG, the broker and the cache must be shared by every host: the file broker and
    the file cache are per host (per-host locks, a poll tick per host, rate budgets counted once
    per host and so exceeded). Registered as an ordinary check, so `migrate`, `runserver` and
    `check --deploy` all refuse to go on; PORTAL_SINGLE_HOST=true says one host is intended."""
    if settings.DEBUG or settings.PORTAL_SINGLE_HOST:
        return []
    errors: list[CheckMessage] = []
    hint = (
        "Set REDIS_URL (and CELERY_BROKER_URL, e.g. redis://host:6379/1) for a deployment with "
        "more than one process host, or PORTAL_SINGLE_HOST=true if everything runs on one machine."
    )
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        errors.append(
            Error(
                "CELERY_BROKER_URL is the embedded file broker while DJANGO_DEBUG is false: "
                "tasks queued on one host are invisible to workers on another.",
                hint=hint,
                id="portal.E001",
            )
        )
    if not settings.REDIS_URL:
        errors.append(
            Error(
                "REDIS_URL is not set while DJANGO_DEBUG is false: the cache (locks, rate budgets, "
                "API throttles) is a file cache on each host, not shared.",
                hint=hint,
                id="portal.E002",
            )
        )
    return errors
