"""Template helpers for sessions: durations, and the LiveKit section of the settings page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template

from sessions import selectors
from sessions.forms import LiveKitConfigForm

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """`1 h 05 min`, `4 min 09 s`, `12 s`."""
    if value is None:
        return ""
    seconds = max(0, int(value.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


@register.inclusion_tag("sessions/livekit_section.html", takes_context=True)
def livekit_settings_section(context: template.Context) -> dict[str, Any]:
    """The LiveKit form on the organization's settings page (it posts to sessions' own view)."""
    org = context["current_org"]
    config = selectors.livekit_config_get(org=org)
    initial = (
        {"url": config.url, "api_key": config.api_key, "agent_name": config.agent_name}
        if config
        else {}
    )
    return {
        "current_org": org,
        "connection": context.get("connection"),
        "livekit_config": config,
        "livekit_form": LiveKitConfigForm(initial=initial),
    }
