"""Runtime sessions, as api/runtime-sessions.md documents them: every room (an open embed page
or a LiveKit room the avatar was dispatched into) is a session with an id, a room name, minutes
and credits at the model's cloud rate (guides/pricing.md). Terminate ends the room at once; an
ended room no longer receives speak or add-context and stops counting."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from sandbox.errors import SandboxError
from sandbox.models import SandboxAccount, SandboxRoom, SandboxRoomMessage
from sandbox.payloads import iso as _iso

# Cloud credits per live minute (guides/pricing.md, "Serving — credits per live minute").
CREDITS_PER_MINUTE = {
    "essence-1": 2.0,
    "expression-1": 4.0,
    "essence-2": 4.0,
    "essence-2-max": 8.0,
    "expression-2": 4.0,
}
DEFAULT_REASON = "user-terminated"
# The transcript's lines: what a visitor said (`user`) and what the avatar said (`assistant`:
# its answers and the lines speak made it say). Context notes are not part of the conversation.
TRANSCRIPT_ROLES: dict[str, str] = {
    SandboxRoomMessage.Kind.VISITOR: "user",
    SandboxRoomMessage.Kind.ANSWER: "assistant",
    SandboxRoomMessage.Kind.SPEAK: "assistant",
}
# revoke-all: "Live sessions stop within one refresh cycle (~5 min)"; the sandbox's cycle is now.
REVOKE_EFFECTIVE_SECONDS = 0
WINDOWS = ("live", "recent", "all")
KINDS = ("conversations", "self_hosted", "all")


def user_check(*, account: SandboxAccount, user_id: str) -> None:
    """The `{user_id}` of /v2 paths is the caller's own account id (GET /v1/me)."""
    if user_id != str(account.public_id):
        raise SandboxError(404, "NOT_FOUND", f"User not found: {user_id}")


def _status(room: SandboxRoom, now: datetime) -> str:
    if room.ended_at is not None:
        return "ended"
    return "live" if room.expires_at > now else "idle"


def _end(room: SandboxRoom, now: datetime) -> datetime:
    if room.ended_at is not None:
        return room.ended_at
    return now if room.expires_at > now else room.last_seen_at


def _rate(room: SandboxRoom) -> float:
    return CREDITS_PER_MINUTE.get(room.agent.model, 4.0)


def _minutes(room: SandboxRoom, now: datetime, *, since: datetime | None = None) -> float:
    start = max(room.created_at, since) if since else room.created_at
    return max(0.0, (_end(room, now) - start).total_seconds() / 60)


def session_data(room: SandboxRoom, now: datetime) -> dict[str, Any]:
    minutes = _minutes(room, now)
    status = _status(room, now)
    rate = _rate(room)
    return {
        "id": str(room.session_id),
        "agent_code": room.agent.code,
        "agent_name": room.agent.name,
        "billing_type": "usage_agent_video_chat",
        "key_alias": None,
        "room_name": room.name,
        "started": _iso(room.created_at),
        "last_seen": _iso(room.ended_at or room.last_seen_at),
        "minutes": round(minutes, 2),
        "credits": round(minutes * rate),
        "burn_rate_cr_per_min": rate if status == "live" else 0.0,
        "status": status,
        "has_transcript": room.messages.filter(kind__in=TRANSCRIPT_ROLES).exists(),
    }


def _rooms(account: SandboxAccount) -> QuerySet[SandboxRoom]:
    return SandboxRoom.objects.filter(account=account).select_related("agent")


def sessions_list(*, account: SandboxAccount, window: str, kind: str, limit: int) -> dict:
    """`data` of GET /v2/{user_id}/runtime-sessions: the filtered sessions, account KPIs."""
    if window not in WINDOWS:
        raise SandboxError(400, "VALIDATION_ERROR", f"window must be one of: {', '.join(WINDOWS)}")
    if kind not in KINDS:
        raise SandboxError(400, "VALIDATION_ERROR", f"kind must be one of: {', '.join(KINDS)}")
    now = timezone.now()
    hour_ago = now - timedelta(hours=1)
    recent = list(_rooms(account).exclude(ended_at__lt=hour_ago).exclude(expires_at__lt=hour_ago))
    live = [room for room in recent if _status(room, now) == "live"]
    rooms = _rooms(account).order_by("-created_at", "-id")
    if window == "live":
        rooms = rooms.filter(ended_at__isnull=True, expires_at__gt=now)
    elif window == "recent":
        rooms = rooms.exclude(ended_at__isnull=True, expires_at__gt=now)
    if kind == "self_hosted":  # every sandbox room is a cloud session
        rooms = rooms.none()
    return {
        "active_count": len(live),
        "live_burn_rate_cr_per_min": sum(_rate(room) for room in live),
        "credits_this_hour": round(
            sum(_minutes(room, now, since=hour_ago) * _rate(room) for room in recent)
        ),
        "sessions": [session_data(room, now) for room in rooms[:limit]],
    }


def _room_owned(*, account: SandboxAccount, session_id: str) -> SandboxRoom:
    try:
        key = uuid.UUID(session_id)
    except ValueError:
        key = None
    room = _rooms(account).filter(session_id=key).first() if key else None
    if room is None:
        raise SandboxError(404, "NOT_FOUND", f"Session not found: {session_id}")
    return room


def session_messages(*, account: SandboxAccount, session_id: str) -> dict[str, Any]:
    """The transcript: what visitors said and what the avatar said, oldest first."""
    room = _room_owned(account=account, session_id=session_id)
    now = timezone.now()
    lines = room.messages.filter(kind__in=TRANSCRIPT_ROLES).order_by("created_at", "id")
    return {
        "session_id": str(room.session_id),
        "agent_code": room.agent.code,
        "started": _iso(room.created_at),
        "ended": _iso(_end(room, now)) if _status(room, now) != "live" else None,
        "live": _status(room, now) == "live",
        "messages": [
            {"timestamp": _iso(m.created_at), "role": TRANSCRIPT_ROLES[m.kind], "message": m.text}
            for m in lines
        ],
    }


def session_terminate(*, account: SandboxAccount, session_id: str, reason: str | None) -> dict:
    """End one session now; ending an ended session again answers the same (harmless)."""
    room = _room_owned(account=account, session_id=session_id)
    SandboxRoom.objects.filter(pk=room.pk, ended_at__isnull=True).update(
        ended_at=timezone.now(), terminated_reason=(reason or DEFAULT_REASON)[:500]
    )
    return {
        "session_id": str(room.session_id),
        "closed": True,
        "ended": True,
        "self_hosted": False,
        "note": "Session ended — the avatar disconnected and the conversation closed.",
    }


def runtime_revoke_all(*, account: SandboxAccount, reason: str | None) -> dict[str, Any]:
    """The emergency stop: every runtime key disabled (runtime tokens are refused until a new
    API key is created), live sessions stopped. Keys are not deleted."""
    now = timezone.now()
    SandboxAccount.objects.filter(pk=account.pk).update(runtime_suspended=True)
    SandboxRoom.objects.filter(account=account, ended_at__isnull=True, expires_at__gt=now).update(
        ended_at=now, terminated_reason=("revoke-all: " + (reason or "runtime keys revoked"))[:500]
    )
    return {
        "revoked": True,
        "effective_in_seconds": REVOKE_EFFECTIVE_SECONDS,
        "runtime_suspended": True,
        "note": "All runtime keys disabled. Creating a new API key restores runtime access.",
    }
