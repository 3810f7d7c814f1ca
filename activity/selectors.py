"""Reads of the activity app: the filtered audit log, webhook endpoints and deliveries. (The
dashboard's aggregates read every app: interfaces/dashboard.py.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from uuid import UUID

from django.db.models import (
    Count,
    Q,
    QuerySet,
)

from activity.models import AuditEvent, OutboundDelivery, WebhookEndpoint
from portal.models import Organization
from portal.tenancy import tenant_get

# --- The audit log ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilters:
    actor: str = ""  # part of an email or key name/prefix, or "system"
    actor_kind: str = ""
    action: str = ""
    target: str = ""  # part of the target's label, or its exact id
    since: date | None = None
    until: date | None = None  # inclusive


def webhook_endpoint_get(*, org: Organization, public_id: str | UUID) -> WebhookEndpoint:
    return tenant_get(WebhookEndpoint.objects.for_org(org), public_id)


def delivery_get(*, org: Organization, public_id: str | UUID) -> OutboundDelivery:
    """One delivery of the organization's endpoints (its endpoint joined in), or NotFound."""
    return tenant_get(OutboundDelivery.objects.for_org(org).select_related("endpoint"), public_id)


def audit_event_list(*, org: Organization, filters: AuditFilters) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.for_org(org)
    if filters.actor:
        events = events.filter(actor_label__icontains=filters.actor)
    if filters.actor_kind:
        events = events.filter(actor_kind=filters.actor_kind)
    if filters.action:
        events = events.filter(action=filters.action)
    if filters.target:
        events = events.filter(
            Q(target_label__icontains=filters.target) | Q(target_id=filters.target)
        )
    if filters.since:
        events = events.filter(created_at__date__gte=filters.since)
    if filters.until:
        events = events.filter(created_at__date__lte=filters.until)
    return events.order_by("-created_at", "-id")


# --- Webhooks -----------------------------------------------------------------------------------


def webhook_endpoint_list(*, org: Organization) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.for_org(org).annotate(
        delivery_count=Count("deliveries"),
        failed_count=Count("deliveries", filter=Q(deliveries__status="failed")),
    )


def delivery_list(*, endpoint: WebhookEndpoint) -> QuerySet[OutboundDelivery]:
    return OutboundDelivery.objects.filter(endpoint=endpoint).order_by("-created_at", "-id")
