"""Typed request bodies, parsed from JSON with bitHuman's 400 answers for wrong shapes."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sandbox import catalog
from sandbox.errors import SandboxError, invalid, missing_param
from sandbox.fields import field_bool, field_choice, field_str

AGENT_CODE_RE = re.compile(r"^[A-Z][A-Z0-9]{9}$")
WEBHOOK_EVENTS = ("agent.ready", "agent.failed")


def is_url(value: str) -> bool:
    parts = urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _media(body: dict[str, Any], name: str) -> str | None:
    """A public URL or base64 data (optionally a data: URL)."""
    value = field_str(body, name)
    if value is None or not value.strip():
        return None
    if is_url(value):
        return value.strip()
    data = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"Field '{name}' must be a public URL or base64 data") from None
    return value


@dataclass(frozen=True)
class GenerateIn:
    prompt: str | None
    image: str | None
    audio: str | None
    aspect_ratio: str
    transparency: bool
    framing: str
    model: str | None
    version: str | None
    agent_id: str | None


def generate_in(body: dict[str, Any]) -> GenerateIn:
    if body.get("video") not in (None, ""):
        raise SandboxError(
            400,
            "VIDEO_INPUT_NOT_SUPPORTED",
            "Agent creation is image-only. Provide a portrait `image`; bitHuman generates a "
            "10-second idle/driver video internally so it loops seamlessly (first frame == last "
            "frame). Video input is not accepted for any model (essence-1, expression-1, "
            "essence-2, essence-2-max, expression-2).",
        )
    model = field_str(body, "model")
    if model is not None and model not in catalog.MODEL_CHOICES:
        raise invalid(
            f"Invalid model '{model}'; must be one of: {', '.join(catalog.MODEL_CHOICES)}"
        )
    duration = body.get("duration")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)):
        raise invalid("Field 'duration' must be an integer")
    agent_id = field_str(body, "agent_id")
    if agent_id is not None and not AGENT_CODE_RE.match(agent_id):
        raise invalid("Field 'agent_id' must be 10 characters: a capital letter, then A-Z or 0-9")
    prompt = (field_str(body, "prompt") or "").strip() or None
    image = _media(body, "image")
    if prompt is None and image is None:
        raise SandboxError(
            400, "MISSING_PARAM", "Missing required field: prompt (needed when there is no image)"
        )
    return GenerateIn(
        prompt=prompt,
        image=image,
        audio=_media(body, "audio"),
        aspect_ratio=field_choice(
            body, "aspect_ratio", choices=("16:9", "9:16", "1:1"), default="16:9"
        )
        or "16:9",
        transparency=field_bool(body, "transparency", default=False),
        framing=field_choice(body, "framing", choices=("portrait", "full_body"), default="portrait")
        or "portrait",
        model=model,
        version=field_choice(body, "version", choices=("v1", "v2")),
        agent_id=agent_id,
    )


@dataclass(frozen=True)
class MessageIn:
    text: str
    context_type: str
    room_id: str | None


def speak_in(body: dict[str, Any]) -> MessageIn:
    return MessageIn(
        text=field_str(body, "message", required=True) or "",
        context_type="speak",
        room_id=field_str(body, "room_id") or None,
    )


def add_context_in(body: dict[str, Any]) -> MessageIn:
    return MessageIn(
        text=field_str(body, "context", required=True) or "",
        context_type=field_choice(
            body, "type", choices=("add_context", "speak"), default="add_context"
        )
        or "add_context",
        room_id=field_str(body, "room_id") or None,
    )


@dataclass(frozen=True)
class EmbedTokenIn:
    agent_id: str
    fingerprint: str
    model: str | None


def embed_token_in(body: dict[str, Any]) -> EmbedTokenIn:
    return EmbedTokenIn(
        agent_id=field_str(body, "agent_id", required=True) or "",
        fingerprint=field_str(body, "fingerprint", required=True) or "",
        model=field_str(body, "model") or None,
    )


@dataclass(frozen=True)
class RuntimeTokenIn:
    agent_code: str | None
    room_name: str | None


def runtime_token_in(body: dict[str, Any]) -> RuntimeTokenIn:
    # The spec names the agent `agent_code`; the LiveKit plugin sends `agent_id`. Take either.
    for name in ("billing_type", "user_id", "fingerprint", "livekit_url", "livekit_token", "model"):
        field_str(body, name)
    room_name = field_str(body, "room_name")
    if room_name is not None and not 0 < len(room_name.strip()) <= 200:
        raise invalid("Field 'room_name' must be 1 to 200 characters")
    return RuntimeTokenIn(
        agent_code=field_str(body, "agent_code") or field_str(body, "agent_id") or None,
        room_name=room_name.strip() if room_name else None,
    )


@dataclass(frozen=True)
class WebhookIn:
    url: str
    events: list[str]
    description: str | None


def webhook_in(body: dict[str, Any]) -> WebhookIn:
    url = field_str(body, "url", required=True) or ""
    events = body.get("events")
    if events is None:
        events = []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise invalid("Field 'events' must be a list of strings")
    unknown = sorted(set(events) - set(WEBHOOK_EVENTS))
    if unknown:
        raise invalid(f"Unknown event '{unknown[0]}'; must be one of: {', '.join(WEBHOOK_EVENTS)}")
    if not is_url(url):
        raise invalid("Field 'url' must be an http(s) URL")
    return WebhookIn(
        url=url.strip(),
        events=list(dict.fromkeys(events)),
        description=field_str(body, "description"),
    )


def system_prompt_in(body: dict[str, Any]) -> str:
    value = field_str(body, "system_prompt")
    if value is None:
        raise missing_param("system_prompt")
    return value
