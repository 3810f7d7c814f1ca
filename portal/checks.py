"""System checks of the portal's own deployment rules (`manage.py check --deploy`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


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
