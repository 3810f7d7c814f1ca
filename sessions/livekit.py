"""LiveKit for `livekit` sessions, the way bitHuman documents it (guides/deploy-livekit.md):
the avatar comes from the organization's own LiveKit Agents worker, which runs
`livekit-plugins-bithuman`'s `AvatarSession` (examples/livekit_worker is one).

With livekit-api the portal creates the room in the organization's LiveKit project
(RoomService.CreateRoom), dispatches the worker into it by its agent name
(AgentDispatchService.CreateDispatch, the bitHuman agent code in the dispatch metadata), mints
viewer tokens (HS256 JWTs signed with the project's API secret) for the room link (LiveKit Meet
by default), and closes the room when the session ends (RoomService.DeleteRoom: everyone leaves,
the avatar too). bitHuman lists the avatar's session under that room name, so speak and
add-context target it by `room_id`.

In Test mode the sandbox stands in for the project (and the worker): the same calls go to the
sandbox's LiveKit project, whose URL and keys come from its control API.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core.cache import cache
from livekit import api as livekit_api

from portal.bithuman import aio
from portal.bithuman import control as bh_control

VIEWER_TOKEN_TTL = timedelta(hours=6)
ROOM_DELETE_TIMEOUT_SECONDS = 5.0
SERVER_TIMEOUT_SECONDS = 8.0
# A room nobody joins closes itself after this long (CreateRoom's empty_timeout).
ROOM_EMPTY_TIMEOUT_SECONDS = 10 * 60
SANDBOX_PROJECT_CACHE_SECONDS = 300


class LiveKitError(Exception):
    """A LiveKit (or sandbox room) call failed; `message` says why, without any secret."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _token(
    *,
    api_key: str,
    api_secret: str,
    room_name: str,
    identity: str,
    name: str,
    ttl: timedelta,
    can_publish: bool = True,
) -> str:
    grants = livekit_api.VideoGrants(
        room_join=True,
        room=room_name,
        can_publish=can_publish,
        can_subscribe=True,
        can_publish_data=can_publish,
    )
    return (
        livekit_api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_name(name)
        .with_grants(grants)
        .with_ttl(ttl)
        .to_jwt()
    )


def viewer_token(
    *,
    api_key: str,
    api_secret: str,
    room_name: str,
    identity: str,
    name: str,
    can_publish: bool = True,
) -> str:
    """A token for a person in the room: talking (publishing) unless `can_publish` is False.
    LiveKit allows one participant per identity, so every link gets its own."""
    return _token(
        api_key=api_key,
        api_secret=api_secret,
        room_name=room_name,
        identity=identity,
        name=name,
        ttl=VIEWER_TOKEN_TTL,
        can_publish=can_publish,
    )


def room_link(*, url: str, token: str, template: str | None = None) -> str:
    """The browser link to the room, from LIVEKIT_ROOM_LINK_TEMPLATE (or the sandbox's)."""
    template = template or settings.LIVEKIT_ROOM_LINK_TEMPLATE
    return template.format(url=quote(url, safe=""), token=quote(token, safe=""))


@dataclass(frozen=True)
class Project:
    """Where a LiveKit session's room lives: the server, its keys, the room link, and the
    dispatch name of the worker that brings the avatar."""

    url: str
    api_key: str
    api_secret: str
    agent_name: str
    room_link_template: str = ""
    sandbox: bool = False

    def __repr__(self) -> str:
        return f"Project(url={self.url!r}, agent_name={self.agent_name!r})"

    def link(self, token: str) -> str:
        return room_link(url=self.url, token=token, template=self.room_link_template or None)


def sandbox_project(*, sandbox_secret: str, agent_name: str) -> Project:
    """The sandbox account's stand-in LiveKit project (cached a few minutes). Raises
    LiveKitError when the sandbox does not answer."""
    key = "sessions:sandbox-livekit:" + hashlib.sha256(sandbox_secret.encode()).hexdigest()[:24]
    found = cache.get(key)
    if not isinstance(found, bh_control.LiveKitProject):
        try:
            found = bh_control.sandbox_livekit_project(
                base_url=settings.SANDBOX_BASE_URL, api_secret=sandbox_secret
            )
        except bh_control.ControlError as error:
            raise LiveKitError(error.message) from None
        cache.set(key, found, SANDBOX_PROJECT_CACHE_SECONDS)
    return Project(
        url=found.url,
        api_key=found.api_key,
        api_secret=found.api_secret,
        agent_name=agent_name,
        room_link_template=found.room_link_template,
        sandbox=True,
    )


def _server_call[T](
    project: Project, call: Callable[[livekit_api.LiveKitAPI], Awaitable[T]], *, what: str
) -> T:
    """One LiveKit server API call; any failure is a LiveKitError in our words."""

    async def run() -> T:
        import aiohttp  # livekit-api's own HTTP client

        client = livekit_api.LiveKitAPI(
            url=project.url,
            api_key=project.api_key,
            api_secret=project.api_secret,
            timeout=aiohttp.ClientTimeout(total=SERVER_TIMEOUT_SECONDS),
            failover=False,
        )
        try:
            return await call(client)
        finally:
            await client.aclose()

    try:
        return aio.run(run())
    except Exception as error:  # reported in our words; the server's own text is not kept
        raise LiveKitError(f"LiveKit did not {what}: {error_classify(error)}") from None


def room_create(*, project: Project, room_name: str, metadata: dict[str, Any]) -> None:
    """RoomService.CreateRoom in the project."""
    request = livekit_api.CreateRoomRequest(
        name=room_name,
        empty_timeout=ROOM_EMPTY_TIMEOUT_SECONDS,
        metadata=json.dumps(metadata, separators=(",", ":")),
    )
    _server_call(project, lambda c: c.room.create_room(request), what=f"create room {room_name}")


def agent_dispatch(*, project: Project, room_name: str, metadata: dict[str, Any]) -> str:
    """AgentDispatchService.CreateDispatch: the project's worker named `agent_name` joins the
    room; `metadata` is its job's metadata. Return the dispatch id."""
    request = livekit_api.CreateAgentDispatchRequest(
        agent_name=project.agent_name,
        room=room_name,
        metadata=json.dumps(metadata, separators=(",", ":")),
    )
    dispatch = _server_call(
        project,
        lambda c: c.agent_dispatch.create_dispatch(request),
        what=f"dispatch agent {project.agent_name} into room {room_name}",
    )
    return str(dispatch.id)


def project_room_delete(*, project: Project, room_name: str) -> None:
    """RoomService.DeleteRoom: every participant, the avatar too, leaves."""
    _server_call(
        project,
        lambda c: c.room.delete_room(livekit_api.DeleteRoomRequest(room=room_name)),
        what=f"close room {room_name}",
    )


def room_link_origin() -> str:
    """The scheme and host of room links (what the session page may frame)."""
    parts = urlsplit(settings.LIVEKIT_ROOM_LINK_TEMPLATE)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


# Twirp error codes LiveKit may answer (livekit.api.ServerErrorCode); anything else is "unknown".
_SERVER_CODES = frozenset(
    value
    for name, value in vars(livekit_api.twirp_client.ServerErrorCode).items()
    if not name.startswith("_") and isinstance(value, str)
)


def error_classify(error: BaseException) -> str:
    """What went wrong, in our words: the server's own text is never kept (the URL is the
    organization's, and whatever answers there must not write into our timeline or logs)."""
    if isinstance(error, livekit_api.twirp_client.ServerError):
        code = error.code if error.code in _SERVER_CODES else "unknown"
        status = error.status if isinstance(error.status, int) and 100 <= error.status < 600 else 0
        return f"the server answered HTTP {status} ({code})"
    if isinstance(error, TimeoutError):
        return "the server did not answer in time"
    if isinstance(error, OSError) or type(error).__module__.startswith("aiohttp"):
        return f"the server could not be reached ({type(error).__name__})"
    return f"the request failed ({type(error).__name__})"
