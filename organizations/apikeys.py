"""Issuing and revoking organization API keys (audited). Authenticating a key is portal.apikeys."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from activity import services as activity_services
from portal.errors import ApplicationError
from portal.models import (
    API_KEY_LOOKUP_LENGTH,
    API_KEY_PREFIX,
    ApiKey,
    ApiScope,
    Membership,
    Organization,
    User,
    token_hash,
)
from portal.tenancy import Role, role_require
from portal.text import one_line_require

logger = logging.getLogger(__name__)


# --- API keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    key: str  # shown once


def api_key_create(
    *,
    org: Organization,
    name: str,
    scopes: list[str],
    created_by: User | None,
    expires_at: datetime | None = None,
) -> IssuedApiKey:
    """A new key: `bhp_` + 43 url-safe characters (256 random bits). Only its hash is kept."""
    name = one_line_require(name, field="name").strip()
    if not name:
        raise ApplicationError("Give the key a name.", field="name")
    unknown = set(scopes) - set(ApiScope.values)
    if not scopes or unknown:
        raise ApplicationError("Choose at least one valid scope.", field="scopes")
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("The expiry must be in the future.", field="expires_at")
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        organization=org,
        name=name,
        prefix=key[:API_KEY_LOOKUP_LENGTH],
        key_hash=token_hash(key),
        last4=key[-4:],
        scopes=sorted(set(scopes)),
        created_by=created_by,
        expires_at=expires_at,
    )
    return IssuedApiKey(api_key=api_key, key=key)


def api_key_create_by(*, actor: Membership, **kwargs: object) -> IssuedApiKey:
    role_require(actor, Role.ADMIN, "manage API keys")
    issued = api_key_create(org=actor.organization, created_by=actor.user, **kwargs)  # type: ignore[arg-type]
    activity_services.audit_record(
        org=actor.organization,
        actor=actor,
        action="api_key.created",
        target=issued.api_key,
        details={"scopes": issued.api_key.scopes},
    )
    return issued


def api_key_revoke(*, actor: Membership, api_key: ApiKey) -> ApiKey:
    role_require(actor, Role.ADMIN, "manage API keys")
    revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if revoked:
        activity_services.audit_record(
            org=actor.organization, actor=actor, action="api_key.revoked", target=api_key
        )
    api_key.refresh_from_db()
    return api_key
