"""Writes of the sandbox: accounts and knobs, faults and rate limits, generations, rooms, webhooks.

Reads that only read live in selectors.py. Reading an agent is a write here (`agent_refresh`):
its state is derived from the clock and each new phase is persisted with a compare-and-set, so
exactly one reader refunds a failure and fires the webhooks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from sandbox import billing, catalog, conf, schemas, selectors, simulation, webhooks
from sandbox.errors import SandboxError, invalid
from sandbox.models import (
    SandboxAccount,
    SandboxAgent,
    SandboxIdempotencyKey,
    SandboxRateBucket,
    SandboxRoom,
)
from sandbox.simulation import AgentState

SECRET_PREFIX = "sbx_"  # noqa: S105 (a prefix, not a secret)
# A Test-mode secret: the prefix and 40 URL-safe characters (30 random bytes), the form both this
# command and the portal issue. The portal mints its organizations' secrets itself and never calls
# the sandbox: the sandbox opens an account the first time a secret of this form authenticates.
SECRET_FORM = re.compile(r"sbx_[A-Za-z0-9_-]{40}")
_random = secrets.SystemRandom()

# --- Accounts -----------------------------------------------------------------------------------


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_well_formed(secret: str) -> bool:
    return SECRET_FORM.fullmatch(secret) is not None


def _account_open(
    *, secret: str, plan: str | None, credits: int | None, label: str
) -> SandboxAccount:
    """The account of `secret`, opened now if it has none (`plan`/`credits` default to settings)."""
    plan = plan or conf.default_plan()
    if plan not in catalog.PLANS:
        raise invalid(f"Unknown plan '{plan}'; must be one of: {', '.join(catalog.PLANS)}")
    credits = conf.default_credits() if credits is None else credits
    if credits < 0:
        raise invalid("Credits cannot be negative")
    # get_or_create on the unique hash: two first requests at once open one account.
    account, _created = SandboxAccount.objects.get_or_create(
        secret_hash=secret_hash(secret),
        defaults={
            "label": label[:200],
            "secret_prefix": secret[:8],
            "plan": plan,
            "credits": credits,
        },
    )
    return account


def sandbox_account_create(
    *, plan: str | None = None, credits: int | None = None, label: str = ""
) -> tuple[SandboxAccount, str]:
    """A new sandbox account and its API secret (shown once; only its hash is stored).

    `plan` defaults to SANDBOX_DEFAULT_PLAN, `credits` to SANDBOX_DEFAULT_CREDITS.
    """
    secret = SECRET_PREFIX + secrets.token_urlsafe(30)
    return _account_open(secret=secret, plan=plan, credits=credits, label=label), secret


def sandbox_account_for_secret(*, secret: str) -> SandboxAccount | None:
    """The account a secret authenticates as: its own, or (the first time a well-formed `sbx_`
    secret is seen, e.g. a portal organization's Test-mode secret) a new one on the default plan
    and credits. Any other unknown secret has none, and the API answers 401 as bitHuman does."""
    account = selectors.account_by_secret(secret=secret)
    if (
        account is None
        and secret_well_formed(secret)
        and not selectors.secret_revoked(secret=secret)
    ):
        account = _account_open(secret=secret, plan=None, credits=None, label="opened on first use")
    return account


def _optional_number(value: Any, name: str, *, maximum: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"Field '{name}' must be a number or null")
    if not 0 <= value <= maximum:
        raise invalid(f"Field '{name}' must be between 0 and {maximum:g}")
    return float(value)


def sandbox_account_configure(
    *, account: SandboxAccount, changes: Mapping[str, Any]
) -> SandboxAccount:
    """Change an account's plan, credits, suspension or knobs (null resets a knob to settings)."""
    allowed = {"plan", "credits", "suspended", "latency_ms", "error_rate", "force_429_rate"}
    allowed |= {"time_scale", "session_limit", "runtime_suspended"}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise invalid(f"Unknown field '{unknown[0]}'; must be one of: {', '.join(sorted(allowed))}")
    if "plan" in changes:
        if changes["plan"] not in catalog.PLANS:
            raise invalid(f"Field 'plan' must be one of: {', '.join(catalog.PLANS)}")
        account.plan = changes["plan"]
    if "credits" in changes:
        credits = changes["credits"]
        if isinstance(credits, bool) or not isinstance(credits, int) or credits < 0:
            raise invalid("Field 'credits' must be a non-negative integer")
        account.credits = credits
    if "suspended" in changes:
        if not isinstance(changes["suspended"], bool):
            raise invalid("Field 'suspended' must be a boolean")
        account.suspended = changes["suspended"]
    if "session_limit" in changes:
        if not isinstance(changes["session_limit"], bool):
            raise invalid("Field 'session_limit' must be a boolean")
        account.session_limit = changes["session_limit"]
    if "runtime_suspended" in changes:  # false: what creating a new API key does
        if not isinstance(changes["runtime_suspended"], bool):
            raise invalid("Field 'runtime_suspended' must be a boolean")
        account.runtime_suspended = changes["runtime_suspended"]
    if "latency_ms" in changes:
        latency = _optional_number(changes["latency_ms"], "latency_ms", maximum=60_000)
        account.latency_ms = None if latency is None else int(latency)
    for rate in ("error_rate", "force_429_rate"):
        if rate in changes:
            setattr(account, rate, _optional_number(changes[rate], rate, maximum=1))
    if "time_scale" in changes:
        account.time_scale = _optional_number(changes["time_scale"], "time_scale", maximum=1e9)
    account.save(update_fields=[field for field in allowed if field in changes])
    return account


def sandbox_clock_advance(*, account: SandboxAccount, seconds: float) -> float:
    """Move the account's simulated clock forward (a test clock); return the total offset."""
    if seconds < 0:
        raise invalid("The clock only moves forward")
    SandboxAccount.objects.filter(pk=account.pk).update(
        clock_offset_seconds=F("clock_offset_seconds") + seconds
    )
    account.refresh_from_db(fields=["clock_offset_seconds"])
    return account.clock_offset_seconds


# --- Faults and rate limits ---------------------------------------------------------------------


def _knob(account_value: float | None, default: float) -> float:
    return default if account_value is None else account_value


def knob_latency_ms(*, account: SandboxAccount) -> int:
    return int(_knob(account.latency_ms, conf.latency_ms()))


def fault_forced_429_check(*, account: SandboxAccount) -> None:
    rate = _knob(account.force_429_rate, conf.force_429_rate())
    if rate > 0 and _random.random() < rate:
        raise SandboxError(
            429,
            "RATE_LIMITED",
            "Rate limit exceeded (forced by the sandbox)",
            headers={"Retry-After": str(conf.forced_retry_after())},
        )


def fault_error_check(*, account: SandboxAccount) -> None:
    rate = _knob(account.error_rate, conf.error_rate())
    if rate > 0 and _random.random() < rate:
        raise SandboxError(
            503, "NO_AVAILABLE_WORKERS", "No available workers, please retry (injected fault)"
        )


@dataclass(frozen=True)
class RateLimit:
    limit: int
    remaining: int
    reset_at: int  # unix seconds at which the bucket is full again

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


def rate_limit_consume(*, account: SandboxAccount, bucket: str) -> RateLimit | None:
    """Take one token from the account's bucket, or raise 429 with Retry-After.

    The bucket is a database row locked with SELECT ... FOR UPDATE (an IMMEDIATE transaction
    on SQLite), so web processes, workers and benchmark clients share one exact count.
    """
    if not conf.rate_limits_enabled():
        return None
    capacity = catalog.RATE_LIMITS[account.plan][bucket]
    per_second = capacity / 60.0
    with transaction.atomic():
        row, _ = SandboxRateBucket.objects.select_for_update().get_or_create(
            account=account,
            bucket=bucket,
            defaults={"tokens": float(capacity), "refilled_at": timezone.now()},
        )
        now = timezone.now()
        elapsed = max((now - row.refilled_at).total_seconds(), 0.0)
        tokens = min(float(capacity), row.tokens + elapsed * per_second)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        row.tokens, row.refilled_at = tokens, now
        row.save(update_fields=["tokens", "refilled_at"])
    limit = RateLimit(
        limit=capacity,
        remaining=int(tokens),
        reset_at=math.ceil(time.time() + (capacity - tokens) / per_second),
    )
    if not allowed:
        retry_after = max(1, math.ceil((1.0 - tokens) / per_second))
        raise SandboxError(
            429,
            "RATE_LIMITED",
            f"Rate limit exceeded: {capacity} {bucket} requests per minute on the "
            f"{account.plan} plan. Retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after), **limit.headers()},
        )
    return limit


# --- Generation ---------------------------------------------------------------------------------

_FIRST_NAMES = ("Ava", "Leo", "Mia", "Noah", "Iris", "Kai", "Nora", "Omar", "Lena", "Theo")
_LAST_NAMES = ("Reed", "Quinn", "Hale", "Moss", "Vale", "Park", "Stone", "Lund", "Cruz", "Wren")


def _code_new() -> str:
    digits, letters = "0123456789", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    while True:
        code = "A" + "".join(
            [_random.choice(digits) for _ in range(2)]
            + [_random.choice(letters) for _ in range(3)]
            + [_random.choice(digits) for _ in range(4)]
        )
        if not SandboxAgent.objects.filter(code=code).exists():
            return code


def _name_for(code: str) -> str:
    number = int(hashlib.sha256(code.encode()).hexdigest(), 16)
    return f"{_FIRST_NAMES[number % 10]} {_LAST_NAMES[(number // 10) % 10]}"


def _stylized(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in catalog.STYLIZED_WORDS)


def stylized_subject(agent: SandboxAgent) -> bool:
    """What the "classifier" sees in a stored agent: its prompt and image URL."""
    return _stylized(f"{agent.system_prompt} {agent.image_url}")


def model_resolve(*, model: str | None, version: str | None, subject: str) -> str:
    """The engine a generate request runs: family + version, a full name, or `auto` routing."""
    family = model or "expression"
    if family in ("expression", "essence"):
        return f"{family}-{'2' if version == 'v2' else '1'}"
    if family == "auto":
        return "expression-2" if _stylized(subject) else "essence-2"
    if family == "essence-2-max":  # delivered by the combined essence-2 creation
        family = "essence-2"
    if family == "essence-2" and _stylized(subject):
        raise SandboxError(
            422,
            "MODEL_SUBJECT_MISMATCH",
            "essence-2 requires a photorealistic human subject; this input looks stylized "
            "— use expression-2",
        )
    return family


_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


def _uploaded_image(image: str | None) -> dict[str, object]:
    """An uploaded (base64) JPEG, PNG or WebP face, kept so the hosted room shows it."""
    if not image or schemas.is_url(image):
        return {}
    encoded = image.split(",", 1)[1] if image.startswith("data:") else image
    raw = base64.b64decode("".join(encoded.split()))
    kind = next((k for magic, k in _IMAGE_MAGIC if raw.startswith(magic)), "")
    if not kind and raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        kind = "image/webp"
    return {"image_data": raw, "image_type": kind} if kind else {}


def scenario_detect(*, data: schemas.GenerateIn) -> tuple[str, str]:
    """The documented failure triggers: (scenario, the error_message the agent will fail with)."""
    for kind, media in (("Image", data.image), ("Audio", data.audio)):
        if media and schemas.is_url(media):
            host = (urlsplit(media).hostname or "").lower()
            if host.endswith(".invalid") or "fail-early" in media.lower():
                return (
                    SandboxAgent.Scenario.FAIL_EARLY,
                    f"{kind} processing failed: Failed to download after 3 attempts: 404",
                )
    prompt = (data.prompt or "").lower()
    if "[fail-early]" in prompt:
        return (
            SandboxAgent.Scenario.FAIL_EARLY,
            "Image processing failed: Failed to download after 3 attempts: 404",
        )
    if "[fail-late]" in prompt or (data.image and "fail-late" in data.image.lower()):
        return (
            SandboxAgent.Scenario.FAIL_LATE,
            "Lip sync failed: the identity model did not converge (sandbox scenario)",
        )
    return SandboxAgent.Scenario.NONE, ""


@dataclass(frozen=True)
class StoredAnswer:
    """A JSON answer exactly as first sent, for Idempotency-Key replays."""

    status: int
    body: str
    replayed: bool


def agent_generate(
    *, account: SandboxAccount, data: schemas.GenerateIn, idempotency_key: str | None
) -> StoredAnswer:
    """Charge the model's price and start a generation; replay the first answer for a known key."""
    now = timezone.now()
    with transaction.atomic():
        # One generate at a time per account: the balance and the key cannot race.
        locked = SandboxAccount.objects.select_for_update().get(pk=account.pk)
        if idempotency_key:
            stored = SandboxIdempotencyKey.objects.filter(
                account=locked, key=idempotency_key
            ).first()
            if stored and stored.created_at >= now - timedelta(seconds=conf.idempotency_ttl()):
                return StoredAnswer(status=stored.status_code, body=stored.body, replayed=True)
            if stored:
                stored.delete()
        # The "classifier" reads the prompt and an image URL (never base64 data).
        image_url = data.image if data.image and schemas.is_url(data.image) else ""
        subject = f"{data.prompt or ''} {image_url}"
        engine = model_resolve(model=data.model, version=data.version, subject=subject)
        cost = catalog.CREATION_COST[engine]
        left = billing.balance(account=locked)  # live minutes already spent count too
        if left < cost:
            raise SandboxError(
                402,
                "INSUFFICIENT_BALANCE",
                f"Insufficient credits: {engine} costs {cost} credits, the balance is {left}",
            )
        if data.agent_id and SandboxAgent.objects.filter(code=data.agent_id).exists():
            raise invalid(f"agent_id {data.agent_id} is already in use")
        scenario, failure_message = scenario_detect(data=data)
        code = data.agent_id or _code_new()
        first = catalog.PHASES[0]
        SandboxAccount.objects.filter(pk=locked.pk).update(credits=F("credits") - cost)
        SandboxAgent.objects.create(
            account=locked,
            code=code,
            name=_name_for(code),
            description=(data.prompt or "")[:300],
            system_prompt=data.prompt or "",
            model=engine,
            image_url=image_url,
            **_uploaded_image(data.image),
            audio_url=data.audio if data.audio and schemas.is_url(data.audio) else "",
            aspect_ratio=data.aspect_ratio,
            framing=data.framing,
            transparency=data.transparency,
            scenario=scenario,
            failure_message=failure_message,
            cost=cost,
            duration_seconds=catalog.NOMINAL_DURATION[engine],
            time_scale=_knob(locked.time_scale, conf.time_scale()),
            clock_offset_at_submit=locked.clock_offset_seconds,
            phase=0,
            status=first.status,
            current_step=first.step,
            progress=first.progress_from,
            progress_msg=first.message,
            event_type=first.event_type,
            created_at=now,
            updated_at=now,
        )
        body = json.dumps(
            {
                "success": True,
                "message": "Agent generation started",
                "agent_id": code,
                "status": first.status,
            }
        )
        if idempotency_key:
            SandboxIdempotencyKey.objects.create(
                account=locked, key=idempotency_key, status_code=200, body=body, created_at=now
            )
    return StoredAnswer(status=200, body=body, replayed=False)


def agent_refresh(*, agent: SandboxAgent, now: datetime | None = None) -> AgentState:
    """The agent's current state, persisting a new phase (and, once, a refund and webhooks)."""
    persisted = simulation.persisted_state(agent=agent)
    if persisted.terminal:
        return persisted
    now = now or timezone.now()
    live = simulation.state_at(
        agent=agent,
        elapsed=simulation.elapsed_seconds(agent=agent, account=agent.account, now=now),
    )
    if live.phase < persisted.phase:
        return persisted
    if live.phase == persisted.phase:
        return live  # progress within a phase is derived, not stored
    with transaction.atomic():
        won = SandboxAgent.objects.filter(
            pk=agent.pk, phase__lt=live.phase, finished_at__isnull=True
        ).update(
            phase=live.phase,
            status=live.status,
            current_step=live.current_step,
            progress=live.progress,
            progress_msg=live.progress_msg,
            event_type=live.event_type,
            error_message=live.error_message,
            updated_at=now,
            finished_at=now if live.terminal else None,
        )
        if won and live.terminal:
            if live.status == "failed" and agent.cost:
                refunded = SandboxAgent.objects.filter(pk=agent.pk, refunded=False).update(
                    refunded=True
                )
                if refunded:
                    SandboxAccount.objects.filter(pk=agent.account_id).update(
                        credits=F("credits") + agent.cost
                    )
            webhooks.webhook_event_enqueue(
                agent=agent, event="agent.ready" if live.status == "ready" else "agent.failed"
            )
    agent.refresh_from_db()
    return simulation.persisted_state(agent=agent) if agent.finished_at else live


def agents_advance() -> int:
    """Bring every unfinished generation up to date (fires webhooks nobody polled for)."""
    finished = 0
    unfinished = SandboxAgent.objects.filter(finished_at__isnull=True).select_related("account")
    for agent in unfinished.iterator():
        if agent_refresh(agent=agent).terminal:
            finished += 1
    return finished


def agent_list(
    *, account: SandboxAccount, limit: int, offset: int, status: str | None
) -> tuple[list[tuple[SandboxAgent, AgentState]], int]:
    """A page of the account's agents, newest first, with their current states, and the total."""
    for agent in selectors.agents_unfinished(account=account):
        agent_refresh(agent=agent)
    agents = selectors.agents_of(account=account)
    if status:
        agents = agents.filter(status=status)
    total = agents.count()
    page = list(agents[offset : offset + limit])
    return [(agent, agent_refresh(agent=agent)) for agent in page], total


def agent_prompt_update(*, account: SandboxAccount, code: str, system_prompt: str) -> SandboxAgent:
    agent = selectors.agent_owned(account=account, code=code)
    agent.system_prompt = system_prompt
    agent.updated_at = timezone.now()
    agent.save(update_fields=["system_prompt", "updated_at"])
    return agent


def agent_delete(*, account: SandboxAccount, code: str) -> None:
    selectors.agent_owned(account=account, code=code).delete()


def agent_is_ready(agent: SandboxAgent) -> bool:
    return agent_refresh(agent=agent).status == "ready"


def agent_ready_require(agent: SandboxAgent) -> None:
    """The hosted room of an agent that is not ready does not open (its page says so).
    `AGENT_NOT_READY` is bitHuman's documented code for an agent still generating or failed."""
    state = agent_refresh(agent=agent)
    if state.status != "ready":
        raise SandboxError(
            409,
            "AGENT_NOT_READY",
            f"Agent {agent.code} is not ready yet (status: {state.status}): its room opens once "
            "its generation has finished",
        )


# --- Housekeeping -------------------------------------------------------------------------------


def sandbox_housekeeping() -> None:
    """Forget expired idempotency keys and rooms that ended long ago."""
    now = timezone.now()
    SandboxIdempotencyKey.objects.filter(
        created_at__lt=now - timedelta(seconds=conf.idempotency_ttl())
    ).delete()
    SandboxRoom.objects.filter(expires_at__lt=now - timedelta(days=1)).delete()
