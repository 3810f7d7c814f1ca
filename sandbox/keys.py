"""An account's API secrets, as api/api-keys.md documents them (`/v2/{user_id}/api-secrets`).

A further secret is the same account: its agents, credits and rate buckets
(api/rate-limits.md: "every API secret on the same account shares the same buckets"). Its value
has the Test-mode form (`sbx_` and 40 characters), so a portal organization can use it. A
deleted secret is denylisted at once: it never authenticates, nor opens an account, again.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from sandbox import services
from sandbox.errors import SandboxError, invalid
from sandbox.models import SandboxAccount, SandboxApiSecret
from sandbox.payloads import iso

ALIAS_MAX = 32
PRIMARY_ALIAS = "default"


def _display(value: str) -> str:
    return value[:8] + "•" * 20 + value[-4:]


def _alias_check(alias: str | None) -> str:
    if alias is None or alias == "":
        return "key-" + secrets.token_hex(4)
    if not isinstance(alias, str) or len(alias) > ALIAS_MAX or not alias.strip():
        raise invalid(f"Field 'alias' must be a label of at most {ALIAS_MAX} characters")
    return alias.strip()


def secret_create(*, account: SandboxAccount, alias: Any) -> dict[str, str]:
    """A new secret of the account; the only answer that carries its value."""
    label = _alias_check(alias)
    if label == PRIMARY_ALIAS:
        raise SandboxError(409, "CONFLICT", f"An API secret with alias '{label}' already exists")
    value = services.SECRET_PREFIX + secrets.token_urlsafe(30)
    try:
        with transaction.atomic():
            SandboxApiSecret.objects.create(
                account=account,
                alias=label,
                secret_hash=services.secret_hash(value),
                value=value,
            )
    except IntegrityError:
        raise SandboxError(
            409, "CONFLICT", f"An API secret with alias '{label}' already exists"
        ) from None
    return {"alias": label, "secret": value}


def _live(account: SandboxAccount) -> QuerySet[SandboxApiSecret]:
    return SandboxApiSecret.objects.filter(account=account, deleted_at__isnull=True)


def secrets_list(*, account: SandboxAccount) -> dict[str, Any]:
    """The account's secrets, masked: the one that opened it first, then the further ones."""
    rows = [
        {
            "alias": PRIMARY_ALIAS,
            "name": PRIMARY_ALIAS,
            "key": PRIMARY_ALIAS,
            "key_display": account.secret_prefix + "•" * 24,
            "created_at": iso(account.created_at),
        }
    ]
    for secret in _live(account).order_by("created_at", "id"):
        rows.append(
            {
                "alias": secret.alias,
                "name": secret.alias,
                "key": secret.alias,
                "key_display": _display(secret.value),
                "created_at": iso(secret.created_at),
            }
        )
    return {"user_id": str(account.public_id), "data": rows, "total_count": len(rows)}


def _owned(account: SandboxAccount, alias: str) -> SandboxApiSecret:
    secret = _live(account).filter(alias=alias).first()
    if secret is None:
        raise SandboxError(404, "NOT_FOUND", f"API secret not found: {alias}")
    return secret


def secret_value(*, account: SandboxAccount, alias: str) -> dict[str, str]:
    """`get-value`: a further secret's value (the first secret's is not kept, only its hash)."""
    return {"value": _owned(account, alias).value}


def secret_delete(*, account: SandboxAccount, alias: str) -> dict[str, str]:
    secret = _owned(account, alias)
    SandboxApiSecret.objects.filter(pk=secret.pk).update(deleted_at=timezone.now())
    return {"alias": alias, "message": "API secret deleted successfully"}
