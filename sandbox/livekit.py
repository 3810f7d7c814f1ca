"""A stand-in for the LiveKit side of a customer's deployment, for Test mode.

bitHuman's documented LiveKit path (guides/deploy-livekit.md, sdk/livekit.md) is the customer's
own LiveKit project plus their LiveKit Agents worker, which runs `livekit-plugins-bithuman`'s
`AvatarSession`: the worker is dispatched into a room, and `AvatarSession.start()` asks bitHuman
to send the avatar (`bithuman-avatar-agent`) into that room, which bitHuman then lists as a
runtime session with that `room_name`.

The sandbox stands in for all three, per sandbox account:
- a LiveKit project: the server API the portal calls, Twirp over HTTP as LiveKit documents it
  (`/twirp/livekit.RoomService/CreateRoom`, `DeleteRoom`, `ListRooms`,
  `/twirp/livekit.AgentDispatchService/CreateDispatch`), authorized by an access token (HS256
  JWT, `iss` = the API key) signed with the project's API secret and carrying the grants LiveKit
  requires (`roomCreate`, `roomList`, `roomAdmin` for the room);
- the customer's worker: it takes every explicit dispatch at once and reads the bitHuman agent
  code from the dispatch metadata (`{"agent_code": ...}`, what examples/livekit_worker reads);
- the avatar joining: a runtime session of that room name opens for a ready agent (as
  `POST /v1/runtime-tokens/request` opens one), so speak / add-context by `room_id` reach it
  and terminate ends it. An agent that is not ready cannot launch: the dispatch fails, noted.
DeleteRoom removes every participant, the avatar too: the room's runtime session ends.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sandbox import rooms, selectors
from sandbox.errors import SandboxError
from sandbox.models import SandboxAccount, SandboxLiveKitDispatch, SandboxLiveKitRoom
from sandbox.services import agent_is_ready

KEY_PREFIX = "sbxlk_"
LEEWAY_SECONDS = 10


class TwirpError(Exception):
    """A Twirp error answer: `{"code": ..., "msg": ...}` with its HTTP status."""

    STATUS = {
        "malformed": 400,
        "invalid_argument": 400,
        "unauthenticated": 401,
        "permission_denied": 403,
        "not_found": 404,
        "bad_route": 404,
        "internal": 500,
    }

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = self.STATUS[code]


# --- The project's credentials and its access tokens -------------------------------------------


def _secret_for(account: SandboxAccount) -> str:
    key = hashlib.sha256(f"sandbox.livekit:{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, account.public_id.bytes, hashlib.sha256).hexdigest()


def project_credentials(*, account: SandboxAccount) -> tuple[str, str]:
    """The account's stand-in LiveKit project: (API key, API secret)."""
    return f"{KEY_PREFIX}{account.public_id.hex}", _secret_for(account)


def _account_for_key(api_key: str) -> SandboxAccount | None:
    if not api_key.startswith(KEY_PREFIX):
        return None
    try:
        public_id = uuid.UUID(hex=api_key.removeprefix(KEY_PREFIX))
    except ValueError:
        return None
    return SandboxAccount.objects.filter(public_id=public_id).first()


def token_verify(token: str) -> tuple[SandboxAccount, dict[str, Any]]:
    """The project and the claims of a valid access token; TwirpError `unauthenticated`."""
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss", "")
    except jwt.PyJWTError:
        raise TwirpError("unauthenticated", "invalid token") from None
    account = _account_for_key(str(issuer))
    if account is None:
        raise TwirpError("unauthenticated", "invalid API key")
    try:
        claims = jwt.decode(
            token,
            _secret_for(account),
            algorithms=["HS256"],
            options={"require": ["exp", "iss"], "verify_aud": False},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.PyJWTError:
        raise TwirpError("unauthenticated", "invalid token signature or expired") from None
    return account, claims


def grant_require(claims: dict[str, Any], grant: str, *, room: str | None = None) -> None:
    video = claims.get("video") or {}
    if not video.get(grant) or (room is not None and video.get("room") not in (room, None, "")):
        raise TwirpError("permission_denied", f"access token lacks the {grant} grant")


# --- Rooms --------------------------------------------------------------------------------------


def _live_room(account: SandboxAccount, name: str) -> SandboxLiveKitRoom | None:
    return (
        SandboxLiveKitRoom.objects.filter(account=account, name=name, deleted_at__isnull=True)
        .order_by("-id")
        .first()
    )


def room_create(
    *, account: SandboxAccount, name: str, metadata: str = "", empty_timeout: int = 0
) -> SandboxLiveKitRoom:
    """CreateRoom: a room of that name, or the one already open (LiveKit answers it again)."""
    if not name or len(name) > 200:
        raise TwirpError("invalid_argument", "room name is required (at most 200 characters)")
    with transaction.atomic():
        SandboxAccount.objects.select_for_update().filter(pk=account.pk).first()
        room = _live_room(account, name)
        if room is None:
            room = SandboxLiveKitRoom.objects.create(
                account=account,
                sid=f"RM_{secrets.token_urlsafe(9)}",
                name=name,
                metadata=metadata,
                empty_timeout=empty_timeout,
            )
    return room


def rooms_list(*, account: SandboxAccount, names: list[str]) -> list[SandboxLiveKitRoom]:
    found = SandboxLiveKitRoom.objects.filter(account=account, deleted_at__isnull=True)
    if names:
        found = found.filter(name__in=names)
    return list(found.order_by("id"))


def room_delete(*, account: SandboxAccount, name: str) -> None:
    """DeleteRoom: everyone leaves, the avatar too (its runtime session ends)."""
    room = _live_room(account, name)
    if room is None:
        raise TwirpError("not_found", "requested room does not exist")
    SandboxLiveKitRoom.objects.filter(pk=room.pk).update(deleted_at=timezone.now())
    rooms.room_end(account=account, room_id=name)


# --- Dispatch and the stand-in worker -----------------------------------------------------------


def dispatch_create(
    *, account: SandboxAccount, room_name: str, agent_name: str, metadata: str = ""
) -> SandboxLiveKitDispatch:
    """CreateDispatch: the named agent is sent into the room (opened if it is not); the
    stand-in worker takes the job at once."""
    if not room_name:
        raise TwirpError("invalid_argument", "room is required")
    room = _live_room(account, room_name) or room_create(account=account, name=room_name)
    dispatch = SandboxLiveKitDispatch.objects.create(
        room=room,
        dispatch_id=f"AD_{secrets.token_urlsafe(9)}",
        agent_name=agent_name,
        metadata=metadata,
    )
    _worker_take(account, dispatch)
    dispatch.refresh_from_db()
    return dispatch


def _worker_take(account: SandboxAccount, dispatch: SandboxLiveKitDispatch) -> None:
    """What the customer's worker does with a job: the avatar session for the metadata's agent."""
    try:
        meta = json.loads(dispatch.metadata or "{}")
    except ValueError:
        meta = {}
    code = str(meta.get("agent_code") or "") if isinstance(meta, dict) else ""
    agent = selectors.agents_of(account=account).filter(code=code).first() if code else None
    if agent is None:
        state, note = "failed", f"no bitHuman agent {code or '(none in the metadata)'} here"
    elif not agent_is_ready(agent):
        state, note = "failed", f"agent {code} is not ready: the avatar cannot launch"
    else:
        try:
            rooms.avatar_join(agent=agent, room_name=dispatch.room.name)
        except SandboxError as error:  # e.g. the plan's concurrent sessions are in use
            state, note = "failed", f"bitHuman refused the avatar session ({error.code})"
        else:
            state, note = "joined", f"avatar of {code} joined as bithuman-avatar-agent"
    SandboxLiveKitDispatch.objects.filter(pk=dispatch.pk).update(state=state, note=note)


# --- The viewer page ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    account: SandboxAccount
    room: SandboxLiveKitRoom
    agent_code: str  # the avatar's agent, once a dispatch brought it in
    problem: str


def viewer_open(*, token: str) -> Viewer:
    """Who may watch which room, from a participant token (`roomJoin` for that room)."""
    account, claims = token_verify(token)
    video = claims.get("video") or {}
    name = str(video.get("room") or "")
    if not video.get("roomJoin") or not name:
        raise TwirpError("permission_denied", "the token does not let its holder join a room")
    room = _live_room(account, name)
    if room is None:
        raise TwirpError("not_found", f"room {name} does not exist (or was closed)")
    dispatch = room.dispatches.order_by("-id").first()
    if dispatch is None:
        return Viewer(account, room, "", "No agent was dispatched into this room.")
    if dispatch.state != "joined":
        return Viewer(account, room, "", f"The avatar did not join: {dispatch.note}.")
    code = str(json.loads(dispatch.metadata)["agent_code"])
    return Viewer(account, room, code, "")
