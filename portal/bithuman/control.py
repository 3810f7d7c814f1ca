"""The sandbox's control endpoint, as the portal uses it in Test mode.

In Test mode the sandbox stands in for both bitHuman and the organization's LiveKit project. The
stand-in project's URL and keys (what a LiveKit project's settings page shows) come from
`GET {base}/control/livekit` with the account's `api-secret` header; the portal then speaks to
that project exactly as to a real one (LiveKit's server API, sessions/livekit.py). This endpoint
is ours (the simulator's), not bitHuman's; it is called here so that every HTTP call the portal
makes to a bitHuman(-like) service goes through this package.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from django.views.decorators.debug import sensitive_variables

from portal.bithuman.core import SECRET_HEADER

CONTROL_TIMEOUT_SECONDS = 5.0


class ControlError(Exception):
    """The control call failed; `message` says why, without any secret."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class LiveKitProject:
    """A LiveKit project: its server URL, API key and secret, and the link that opens a room."""

    url: str
    api_key: str
    api_secret: str
    room_link_template: str

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"LiveKitProject(url={self.url!r}, api_key={self.api_key!r})"


@sensitive_variables("api_secret")
def sandbox_livekit_project(
    *, base_url: str, api_secret: str, timeout: float = CONTROL_TIMEOUT_SECONDS
) -> LiveKitProject:
    """The sandbox account's stand-in LiveKit project."""
    try:
        response = httpx.get(
            f"{base_url.rstrip('/')}/control/livekit",
            headers={SECRET_HEADER: api_secret},
            timeout=timeout,
        )
    except httpx.HTTPError as error:
        raise ControlError(
            f"The sandbox's LiveKit project could not be reached ({type(error).__name__})"
        ) from None
    if not response.is_success:
        raise ControlError(
            f"The sandbox's LiveKit project is not available (HTTP {response.status_code})"
        )
    try:
        data = response.json()
        return LiveKitProject(
            url=str(data["url"]),
            api_key=str(data["api_key"]),
            api_secret=str(data["api_secret"]),
            room_link_template=str(data["room_link_template"]),
        )
    except (ValueError, KeyError, TypeError):
        raise ControlError("The sandbox answered its LiveKit project unreadably") from None
