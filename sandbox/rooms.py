"""Sandbox rooms: embed and runtime tokens, the rooms they open, and messages delivered to them
(speak, add-context), as bitHuman documents them."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from sandbox import catalog, conf, schemas, selectors, tokens
from sandbox.errors import SandboxError, agent_not_found, invalid, no_active_rooms
from sandbox.models import (
    SandboxAccount,
    SandboxAgent,
    SandboxRoom,
    SandboxRoomMessage,
)
from sandbox.services import agent_is_ready, agent_ready_require

SECRET_PREFIX = "sbx_"  # noqa: S105 (a prefix, not a secret)
# A Test-mode secret: the prefix and 40 URL-safe characters (30 random bytes), the form both this
# command and the portal issue. The portal mints its organizations' secrets itself and never calls
# the sandbox: the sandbox opens an account the first time a secret of this form authenticates.
SECRET_FORM = re.compile(r"sbx_[A-Za-z0-9_-]{40}")
_random = secrets.SystemRandom()


# --- Rooms and tokens ---------------------------------------------------------------------------


def model_family(name: str) -> str | None:
    """Fold a model name or force-tier slug (`expression-2-gpu`) onto its family."""
    for suffix in ("-gpu", "-cpu", "-ane"):
        name = name.removesuffix(suffix)
    if name.startswith("essence-2-light"):
        return "essence-2"
    return name if name in (*catalog.ENGINES, "essence-2-max") else None


def _room_register(*, agent: SandboxAgent, name: str, kind: str, ttl: float) -> SandboxRoom:
    """Open (or revive, or keep alive) a live room, within the plan's concurrency limit."""
    now = timezone.now()
    expires_at = now + timedelta(seconds=ttl)
    live_rooms = SandboxRoom.objects.filter(ended_at__isnull=True, expires_at__gt=now)
    if live_rooms.filter(agent=agent, name=name).update(last_seen_at=now, expires_at=expires_at):
        return SandboxRoom.objects.get(agent=agent, name=name)
    with transaction.atomic():
        account = SandboxAccount.objects.select_for_update().get(pk=agent.account_id)
        limit = catalog.CONCURRENCY[account.plan]
        if live_rooms.filter(account=account).count() >= limit:
            raise SandboxError(
                403,
                "CONCURRENCY_LIMIT_REACHED",
                f"Concurrent session limit reached ({limit} on the {account.plan} plan)",
            )
        room, _ = SandboxRoom.objects.update_or_create(
            agent=agent,
            name=name,
            defaults={
                "account": account,
                "kind": kind,
                "last_seen_at": now,
                "expires_at": expires_at,
                "ended_at": None,
            },
        )
    return room


def embed_token_issue(*, account: SandboxAccount, data: schemas.EmbedTokenIn) -> dict[str, Any]:
    agent = selectors.agent_owned(account=account, code=data.agent_id)
    # api/embedding.md lists no error for an agent still generating: the token is minted, and
    # `supported_models` (what it can be launched as right now) is empty until it is ready; its
    # room does not open until then (the embed page says so).
    supported = catalog.SUPPORTED_MODELS[agent.model] if agent_is_ready(agent) else []
    if data.model is not None:
        family = model_family(data.model)
        if family is None:
            names = ", ".join((*catalog.ENGINES, "essence-2-max"))
            raise invalid(f"Invalid model '{data.model}'; must be one of: {names}")
        if family not in supported:
            raise SandboxError(
                409,
                "MODEL_NOT_GENERATED",
                f"agent {agent.code}'s {family} model hasn't been generated yet",
            )
    sid = uuid.uuid4().hex
    issued = int(time.time())
    claims = {
        "iss": "bithuman-sandbox",
        "aud": "embed",
        "sub": agent.code,
        "acc": account.public_id.hex,
        "sid": sid,
        "fp": data.fingerprint,
        "iat": issued,
        "exp": issued + conf.embed_token_ttl(),
    }
    result: dict[str, Any] = {"sid": sid, "supported_models": supported}
    if data.model is not None:
        claims["model"] = data.model
        result["model"] = data.model
    result["token"] = tokens.token_encode(claims=claims)
    return result


def embed_room_touch(*, code: str, token: str) -> SandboxRoom:
    """The live room of an open embed page (its heartbeat), from the page's token."""
    claims = tokens.token_decode(token=token)
    if claims is None or claims.get("aud") != "embed" or claims.get("sub") != code:
        raise SandboxError(401, "UNAUTHORIZED", "Invalid or expired embed token")
    agent = selectors.agent_by_code(code=code, account_public_id=str(claims.get("acc", "")))
    if agent is None:
        raise agent_not_found(code)
    agent_ready_require(agent)
    name = f"embed-{claims['sid']}"
    if SandboxRoom.objects.filter(agent=agent, name=name, ended_at__isnull=False).exists():
        # Terminated (or revoked, or ended by the operator): the session is over for good; an
        # open page's heartbeat must not bring it back (it would run, and bill, again).
        raise SandboxError(401, "UNAUTHORIZED", "This session has ended")
    return _room_register(agent=agent, name=name, kind=SandboxRoom.Kind.EMBED, ttl=conf.room_ttl())


def runtime_token_issue(*, account: SandboxAccount, data: schemas.RuntimeTokenIn) -> dict[str, Any]:
    """A runtime token (account-scoped, api/authentication.md); with a ready agent it also
    registers the room the avatar joins. An agent that is not ready opens no room: the avatar
    cannot launch, so speak and add-context find no active room (the openapi lists no error
    for it here)."""
    if account.runtime_suspended:  # api/runtime-sessions.md, "Revoke all keys"
        raise SandboxError(
            401,
            "UNAUTHORIZED",
            "Runtime keys were revoked (revoke-all): a new API key restores runtime access",
        )
    if account.credits <= 0:
        raise SandboxError(402, "INSUFFICIENT_BALANCE", "Not enough credits to start a session")
    transaction_id = str(uuid.uuid4())
    room_name = data.room_name
    if data.agent_code:
        agent = selectors.agent_owned(account=account, code=data.agent_code)
        room_name = room_name or f"room-{secrets.token_hex(6)}"
        if agent_is_ready(agent):
            avatar_join(agent=agent, room_name=room_name)
    issued = int(time.time())
    claims = {
        "iss": "bithuman-sandbox",
        "aud": "runtime",
        "sub": data.agent_code or "",
        "acc": account.public_id.hex,
        "room": room_name or "",
        "txn": transaction_id,
        "iat": issued,
        "exp": issued + 3600,
    }
    return {"token": tokens.token_encode(claims=claims), "transaction_id": transaction_id}


def avatar_join(*, agent: SandboxAgent, room_name: str) -> SandboxRoom:
    """The avatar joins a LiveKit room: its runtime session (api/runtime-sessions.md) opens."""
    return _room_register(
        agent=agent, name=room_name, kind=SandboxRoom.Kind.RUNTIME, ttl=conf.runtime_room_ttl()
    )


def room_end(*, account: SandboxAccount, room_id: str) -> int:
    """End a live room now (what a LiveKit session ending does); return how many ended."""
    return SandboxRoom.objects.filter(account=account, name=room_id, ended_at__isnull=True).update(
        ended_at=timezone.now()
    )


def agent_message_deliver(
    *, account: SandboxAccount, code: str, kind: str, text: str, room_id: str | None
) -> tuple[int, int]:
    """Deliver speech or context to the agent's live rooms (or the one named `room_id`).

    Return (delivered, skipped): a room whose avatar worker never joined is skipped
    (`rooms_skipped_no_worker`, api/agents.md); no live room at all is a 404."""
    agent = selectors.agent_owned(account=account, code=code)
    rooms = list(selectors.rooms_live(agent=agent, name=room_id))
    if not rooms:
        raise no_active_rooms(agent.code)
    reached = [room for room in rooms if room.has_worker]
    SandboxRoomMessage.objects.bulk_create(
        SandboxRoomMessage(room=room, kind=kind, text=text) for room in reached
    )
    return len(reached), len(rooms) - len(reached)


def room_worker_set(*, account: SandboxAccount, room_id: str, present: bool) -> int:
    """Whether the avatar worker is in a live room (control API); return how many changed."""
    return selectors.rooms_live(account=account, name=room_id).update(has_worker=present)


VISITOR_MAX_CHARS = 2000


def avatar_answer(*, agent: SandboxAgent, room: SandboxRoom, text: str) -> str:
    """The sandbox's stand-in for the agent's LLM: a short, predictable reply that shows what it
    heard and the latest context note it was given."""
    note = room.messages.filter(kind=SandboxRoomMessage.Kind.ADD_CONTEXT).order_by("-id").first()
    answer = f"You said: “{text}”. This is {agent.name} in the bitHuman sandbox."
    if note is not None:
        answer += f" I was told: {note.text[:200]}"
    return answer


def visitor_talk(*, code: str, token: str, text: str) -> list[SandboxRoomMessage]:
    """A visitor speaks in the hosted room (the page's text box stands in for the microphone);
    the avatar answers. Both are lines of the room's runtime session transcript."""
    text = text.strip()
    if not text:
        raise invalid("Say something first")
    if len(text) > VISITOR_MAX_CHARS:
        raise invalid(f"Keep it under {VISITOR_MAX_CHARS} characters")
    room = embed_room_touch(code=code, token=token)
    now = timezone.now()
    lines = [
        SandboxRoomMessage(
            room=room, kind=SandboxRoomMessage.Kind.VISITOR, text=text, created_at=now
        )
    ]
    if room.has_worker:  # without its worker in the room nobody answers
        lines.append(
            SandboxRoomMessage(
                room=room,
                kind=SandboxRoomMessage.Kind.ANSWER,
                text=avatar_answer(agent=room.agent, room=room, text=text),
                created_at=now,
            )
        )
    return SandboxRoomMessage.objects.bulk_create(lines)
