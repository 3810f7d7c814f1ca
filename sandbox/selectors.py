"""Reads of the sandbox. Every lookup of an agent or webhook is scoped to the calling account,
and "not yours" answers exactly like "does not exist"."""

from __future__ import annotations

import hashlib
import uuid

from django.db.models import QuerySet
from django.utils import timezone

from sandbox.errors import SandboxError, agent_not_found
from sandbox.models import (
    SandboxAccount,
    SandboxAgent,
    SandboxApiSecret,
    SandboxRoom,
    SandboxRoomMessage,
    SandboxWebhook,
    SandboxWebhookDelivery,
)


def account_by_secret(*, secret: str) -> SandboxAccount | None:
    """The account a secret belongs to: the secret that opened it, or one of its further
    secrets (api/api-keys.md)."""
    digest = hashlib.sha256(secret.encode()).hexdigest()
    account = SandboxAccount.objects.filter(secret_hash=digest).first()
    if account is None:
        extra = SandboxApiSecret.objects.select_related("account").filter(secret_hash=digest)
        found = extra.filter(deleted_at__isnull=True).first()
        account = found.account if found else None
    return account


def secret_revoked(*, secret: str) -> bool:
    """Whether this is a deleted further secret (api/api-keys.md: denylisted at once)."""
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return SandboxApiSecret.objects.filter(secret_hash=digest, deleted_at__isnull=False).exists()


def agents_of(*, account: SandboxAccount) -> QuerySet[SandboxAgent]:
    return (
        SandboxAgent.objects.filter(account=account)
        .select_related("account")
        .order_by("-created_at", "-id")
    )


def agents_unfinished(*, account: SandboxAccount) -> QuerySet[SandboxAgent]:
    return agents_of(account=account).filter(finished_at__isnull=True)


def agent_owned(*, account: SandboxAccount, code: str) -> SandboxAgent:
    agent = agents_of(account=account).filter(code=code).first()
    if agent is None:
        raise agent_not_found(code)
    return agent


def agent_by_code(*, code: str, account_public_id: str) -> SandboxAgent | None:
    try:
        public_id = uuid.UUID(account_public_id)
    except ValueError:
        return None
    return (
        SandboxAgent.objects.select_related("account")
        .filter(code=code, account__public_id=public_id)
        .first()
    )


def agent_public(*, code: str) -> SandboxAgent | None:
    """An agent by its code alone (embed pages and face images are public by code)."""
    return SandboxAgent.objects.filter(code=code).first()


def rooms_live(
    *, agent: SandboxAgent | None = None, account: SandboxAccount | None = None, name: str | None
) -> QuerySet[SandboxRoom]:
    rooms = SandboxRoom.objects.filter(ended_at__isnull=True, expires_at__gt=timezone.now())
    if agent is not None:
        rooms = rooms.filter(agent=agent)
    if account is not None:
        rooms = rooms.filter(account=account)
    if name:
        rooms = rooms.filter(name=name)
    return rooms.select_related("agent").order_by("created_at", "id")


def rooms_of(*, account: SandboxAccount) -> QuerySet[SandboxRoom]:
    return (
        SandboxRoom.objects.filter(account=account)
        .select_related("agent")
        .order_by("created_at", "id")
    )


def room_messages(*, room: SandboxRoom, after: int) -> QuerySet[SandboxRoomMessage]:
    return SandboxRoomMessage.objects.filter(room=room, id__gt=after).order_by("id")


def webhooks_of(*, account: SandboxAccount) -> QuerySet[SandboxWebhook]:
    return SandboxWebhook.objects.filter(account=account).order_by("created_at")


def webhook_owned(*, account: SandboxAccount, webhook_id: str) -> SandboxWebhook:
    try:
        key = uuid.UUID(webhook_id)
    except ValueError:
        key = None
    webhook = webhooks_of(account=account).filter(pk=key).first() if key else None
    if webhook is None:
        raise SandboxError(404, "NOT_FOUND", f"Webhook not found: {webhook_id}")
    return webhook


def deliveries_of(*, webhook: SandboxWebhook) -> QuerySet[SandboxWebhookDelivery]:
    return webhook.deliveries.order_by("-created_at")[:100]
