"""Writes of the activity app: the audit log and outbound webhooks.

- `audit_record` is the one way an audit entry is written. The services call it (pages, the API
  and tasks are then all covered); the entry joins the caller's transaction.
- Outbound webhooks: `webhook_emit` records one delivery per subscribed endpoint and sends it
  after commit (Celery). Each attempt re-checks that the URL is public, signs the stored body
  Stripe-style (`Portal-Signature: t=<unix>,v1=<hex>[,v1=<hex of the previous secret>]`) and
  schedules the next attempt on WEBHOOK_RETRY_SCHEDULE; after the last one the delivery fails.
  The beat sweep sends due retries and disables endpoints failing for days.
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import models, transaction
from django.http import HttpRequest
from django.utils import timezone

from activity.models import (
    ActorKind,
    AuditAction,
    AuditEvent,
    WebhookEndpoint,
    WebhookEvent,
)
from portal import netsafe
from portal.clientip import client_ip
from portal.errors import ApplicationError
from portal.models import ApiKey, Membership, Organization, User
from portal.tenancy import Actor as TenancyActor
from portal.tenancy import ApiKeyActor, Role, role_require
from portal.text import one_line_require

logger = logging.getLogger(__name__)

# --- The audit log ------------------------------------------------------------------------------

# The client address of the request being served (set by activity.middleware), so services that
# never see the request can still record where a person acted from.
request_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_ip", default=None)
# The staff member impersonating the request's user, if any (organizations.impersonation): every
# entry written meanwhile names them.
request_impersonator: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_impersonator", default=None
)

# Who an audit entry names: a person (a membership or a user), an API key, or the system (None).
Actor = TenancyActor | User | ApiKey | None


def _actor_fields(actor: Actor) -> dict[str, Any]:
    """Who acted: a person (a membership or a user), an API key, or the system (None)."""
    api_key = actor.api_key if isinstance(actor, ApiKeyActor) else None
    if isinstance(actor, ApiKey):
        api_key = actor
    if api_key is not None:
        return {
            "actor_kind": ActorKind.API_KEY,
            "actor_api_key": api_key,
            "actor_label": f"{api_key.name} ({api_key.display})",
        }
    user = actor.user if isinstance(actor, Membership) and actor.user_id else actor
    if isinstance(user, User):
        return {"actor_kind": ActorKind.USER, "actor_user": user, "actor_label": user.email}
    return {"actor_kind": ActorKind.SYSTEM, "actor_label": "system"}


def target_describe(target: models.Model | None) -> dict[str, str]:
    """A target's type, opaque id and a label people recognize."""
    if target is None:
        return {}
    identifier = getattr(target, "public_id", None) or target.pk
    label: object = target
    if isinstance(target, Membership):
        label = target.user.email
    elif hasattr(target, "email"):
        label = target.email
    elif hasattr(target, "display"):
        label = f"{getattr(target, 'name', '')} ({target.display})"
    elif target._meta.label == "agent_sessions.AgentSession":
        label = f"session of {target.agent.name}"  # type: ignore[attr-defined]
    elif target._meta.label == "agents.Agent":
        label = target.name  # type: ignore[attr-defined]
    return {
        "target_type": target._meta.model_name or "",
        "target_id": str(identifier),
        "target_label": str(label)[:200],
    }


def audit_record(
    *,
    org: Organization,
    actor: Actor,
    action: str,
    target: models.Model | None = None,
    details: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
    staff: bool = False,
) -> AuditEvent:
    """Append one audit entry. People's entries carry their IP address."""
    fields = _actor_fields(actor)
    if staff:
        fields["actor_kind"] = ActorKind.STAFF
    ip = None
    if fields["actor_kind"] in (ActorKind.USER, ActorKind.STAFF):
        ip = client_ip(request) if request is not None else request_ip.get()
    details = dict(details or {})
    impersonator = request_impersonator.get()
    if impersonator and not staff:
        details["impersonated_by"] = impersonator
    return AuditEvent.objects.create(
        organization=org,
        action=action,
        details=details,
        ip_address=ip,
        **fields,
        **target_describe(target),
    )


# --- Outbound webhooks: endpoints ---------------------------------------------------------------

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SIGNATURE_HEADER = "Portal-Signature"
EVENT_TYPES = [choice.value for choice in WebhookEvent]


def _secret_new() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _site_is_local() -> bool:
    host = httpx.URL(settings.SITE_URL).host.strip("[]").lower()
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def local_receivers_allowed(org: Organization | None) -> bool:
    """Local `http://` receivers are for trying webhooks out: allowed in development
    (DEBUG or WEBHOOK_ALLOW_LOCAL) and for an organization in Test mode on a portal served
    from a loopback address (a local install). A public portal keeps the production rules,
    whatever the organization's mode."""
    if settings.WEBHOOK_ALLOW_LOCAL or settings.DEBUG:
        return True
    if org is None or not _site_is_local():
        return False
    from portal.models import BithumanConnection, ConnectionMode

    return not BithumanConnection.objects.filter(
        organization=org, mode=ConnectionMode.LIVE
    ).exists()


def webhook_url_check(url: str, *, org: Organization | None = None) -> netsafe.IPAddress | None:
    """The public address to deliver to, by the same rules as media links (https, public
    addresses only, every resolved address checked: `portal.netsafe.public_url_check`).
    ApplicationError says why not.

    Where local receivers are allowed (`local_receivers_allowed`) http:// and local addresses
    pass, and None means "connect by name"."""
    return netsafe.public_url_check(url, local_allowed=local_receivers_allowed(org))


def _events_clean(events: Iterable[str]) -> list[str]:
    chosen = sorted(set(events))
    if not chosen or set(chosen) - set(EVENT_TYPES):
        raise ApplicationError("Choose at least one valid event.", field="events")
    return chosen


@dataclass(frozen=True)
class EndpointWithSecret:
    endpoint: WebhookEndpoint
    secret: str  # shown once


@transaction.atomic
def webhook_endpoint_create(
    *, actor: Membership, url: str, events: Iterable[str], description: str = ""
) -> EndpointWithSecret:
    role_require(actor, Role.ADMIN, "manage webhooks")
    url = url.strip()
    webhook_url_check(url, org=actor.organization)
    secret = _secret_new()
    endpoint = WebhookEndpoint.objects.create(
        organization=actor.organization,
        url=url,
        events=_events_clean(events),
        description=one_line_require(description, field="description").strip()[:200],
        secret=secret,
        created_by=actor.user if actor.user_id else None,
    )
    audit_record(
        org=actor.organization,
        actor=actor,
        action=AuditAction.WEBHOOK_CREATED,
        target=endpoint,
        details={"url": endpoint.url, "events": endpoint.events},
    )
    return EndpointWithSecret(endpoint=endpoint, secret=secret)


@transaction.atomic
def webhook_endpoint_update(
    *,
    actor: Membership,
    endpoint: WebhookEndpoint,
    url: str,
    events: Iterable[str],
    description: str,
    enabled: bool,
) -> WebhookEndpoint:
    role_require(actor, Role.ADMIN, "manage webhooks")
    url = url.strip()
    webhook_url_check(url, org=actor.organization)
    before = {
        "url": endpoint.url,
        "events": endpoint.events,
        "description": endpoint.description,
        "enabled": endpoint.enabled,
    }
    endpoint.url = url
    endpoint.events = _events_clean(events)
    endpoint.description = one_line_require(description, field="description").strip()[:200]
    if enabled and not endpoint.enabled:
        endpoint.disabled_reason = ""
        endpoint.failing_since = None
    endpoint.enabled = enabled
    endpoint.save()
    after = {
        "url": endpoint.url,
        "events": endpoint.events,
        "description": endpoint.description,
        "enabled": endpoint.enabled,
    }
    changes = {k: {"from": before[k], "to": after[k]} for k in before if before[k] != after[k]}
    if changes:
        audit_record(
            org=actor.organization,
            actor=actor,
            action=AuditAction.WEBHOOK_UPDATED,
            target=endpoint,
            details=changes,
        )
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, actor: Membership, endpoint: WebhookEndpoint) -> None:
    role_require(actor, Role.ADMIN, "manage webhooks")
    audit_record(
        org=actor.organization,
        actor=actor,
        action=AuditAction.WEBHOOK_DELETED,
        target=endpoint,
        details={"url": endpoint.url},
    )
    endpoint.delete()


@transaction.atomic
def webhook_secret_rotate(*, actor: Membership, endpoint: WebhookEndpoint) -> str:
    """A new signing secret, shown once. The old one keeps signing (as a second `v1=`) for
    WEBHOOK_SECRET_OVERLAP_HOURS so receivers can switch without missing a delivery."""
    role_require(actor, Role.ADMIN, "manage webhooks")
    secret = _secret_new()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = timezone.now() + timedelta(
        hours=settings.WEBHOOK_SECRET_OVERLAP_HOURS
    )
    endpoint.secret = secret
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    audit_record(
        org=actor.organization,
        actor=actor,
        action=AuditAction.WEBHOOK_SECRET_ROTATED,
        target=endpoint,
        details={"previous_valid_until": endpoint.previous_secret_expires_at.isoformat()},
    )
    return secret
