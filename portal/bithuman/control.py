"""The sandbox's control endpoint, as the portal uses it in Test mode.

The sandbox stands in for both bitHuman and LiveKit in Test mode. Ending a session there closes
the room it registered for the runtime token: `POST {base}/control/rooms/{room}/end` with the
account's `api-secret` header; 2xx ended it, 404 means it had already ended. This endpoint is
ours (the simulator's), not bitHuman's; it is called here so that every HTTP call the portal
makes to a bitHuman(-like) service goes through this package.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
from django.views.decorators.debug import sensitive_variables

from portal.bithuman.core import SECRET_HEADER

ROOM_END_TIMEOUT_SECONDS = 5.0


class ControlError(Exception):
    """The control call failed; `message` says why, without any secret."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@sensitive_variables("api_secret")
def sandbox_room_end(
    *, base_url: str, api_secret: str, room_name: str, timeout: float = ROOM_END_TIMEOUT_SECONDS
) -> bool:
    """End a runtime room in the sandbox; False when it had already ended."""
    try:
        response = httpx.post(
            f"{base_url.rstrip('/')}/control/rooms/{quote(room_name, safe='')}/end",
            headers={SECRET_HEADER: api_secret},
            timeout=timeout,
        )
    except httpx.HTTPError as error:
        raise ControlError(
            f"The sandbox did not close room {room_name} ({type(error).__name__})"
        ) from None
    if response.status_code == 404:
        return False
    if not response.is_success:
        raise ControlError(
            f"The sandbox did not close room {room_name} (HTTP {response.status_code})"
        )
    return True
