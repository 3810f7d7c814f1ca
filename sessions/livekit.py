"""LiveKit for `livekit` sessions: participant tokens, the room link, and closing a room.

Tokens are minted with livekit-api (HS256 JWTs signed with the organization's API secret). The
avatar's token lets bitHuman's worker join one room as `bithuman-avatar-agent`; a viewer token
lets a person open the room through the link template (LiveKit Meet by default).

Closing a room: in Live mode through LiveKit's RoomService (DeleteRoom), which makes the avatar
leave; in Test mode the sandbox stands in for both bitHuman and LiveKit, and its control API
ends the room it registered for the runtime token (`portal.bithuman.control`).
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote, urlsplit

from django.conf import settings
from livekit import api as livekit_api

from portal.bithuman import aio

AVATAR_IDENTITY = "bithuman-avatar-agent"
AVATAR_TOKEN_TTL = timedelta(hours=1)
VIEWER_TOKEN_TTL = timedelta(hours=6)
ROOM_DELETE_TIMEOUT_SECONDS = 5.0


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


def avatar_token(*, api_key: str, api_secret: str, room_name: str) -> str:
    """The token bitHuman's worker joins the room with (sent in the runtime-token request)."""
    return _token(
        api_key=api_key,
        api_secret=api_secret,
        room_name=room_name,
        identity=AVATAR_IDENTITY,
        name="bitHuman avatar",
        ttl=AVATAR_TOKEN_TTL,
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


def room_link(*, url: str, token: str) -> str:
    """The browser link to the room, from LIVEKIT_ROOM_LINK_TEMPLATE."""
    template: str = settings.LIVEKIT_ROOM_LINK_TEMPLATE
    return template.format(url=quote(url, safe=""), token=quote(token, safe=""))


def room_link_origin() -> str:
    """The scheme and host of room links (what the session page may frame)."""
    parts = urlsplit(settings.LIVEKIT_ROOM_LINK_TEMPLATE)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


async def _room_delete(*, url: str, api_key: str, api_secret: str, room_name: str) -> None:
    import aiohttp  # livekit-api's own HTTP client

    timeout = aiohttp.ClientTimeout(total=ROOM_DELETE_TIMEOUT_SECONDS)
    client = livekit_api.LiveKitAPI(
        url=url, api_key=api_key, api_secret=api_secret, timeout=timeout, failover=False
    )
    try:
        await client.room.delete_room(livekit_api.DeleteRoomRequest(room=room_name))
    finally:
        await client.aclose()


def room_delete(*, url: str, api_key: str, api_secret: str, room_name: str) -> None:
    """Close the room on the LiveKit server (every participant, the avatar too, is removed)."""
    try:
        aio.run(_room_delete(url=url, api_key=api_key, api_secret=api_secret, room_name=room_name))
    except Exception as error:  # any failure is reported; none may stop the session ending
        raise LiveKitError(
            f"LiveKit did not close room {room_name}: {error_classify(error)}"
        ) from None


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
