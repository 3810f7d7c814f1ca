"""The audit log over REST: `GET /api/v1/audit-events` (scope `audit:read`), read-only."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Schema
from pydantic import Field

from activity import selectors
from activity.models import AuditEvent
from portal.api import MAX_OFFSET, ListQuery, Text, page_bounds, scope_require
from portal.models import ApiScope

router = Router(tags=["audit"])


class AuditEventOut(Schema):
    id: str
    created_at: datetime
    actor_kind: str
    actor: str
    action: str
    target_type: str
    target_id: str
    target: str
    details: dict[str, Any]
    ip_address: str | None


class AuditEventList(Schema):
    items: list[AuditEventOut]
    count: int


class AuditEventQuery(Schema):
    actor: Text | None = Field(default=None, max_length=254)
    actor_kind: Text | None = None  # Text: a NUL would reach PostgreSQL and fail there
    action: Text | None = Field(default=None, max_length=40)
    target: Text | None = Field(default=None, max_length=200)
    since: date | None = None
    until: date | None = None
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


def audit_event_out(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": str(event.public_id),
        "created_at": event.created_at,
        "actor_kind": event.actor_kind,
        "actor": event.actor_label,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target": event.target_label,
        "details": event.details,
        "ip_address": event.ip_address,
    }


@router.get("", response=AuditEventList, summary="List audit events (newest first)")
def audit_event_list(request: HttpRequest, filters: Query[AuditEventQuery]) -> dict[str, Any]:
    scope_require(request, ApiScope.AUDIT_READ)
    start, end = page_bounds(ListQuery(limit=filters.limit, offset=filters.offset))
    events = selectors.audit_event_list(
        org=request.organization,  # type: ignore[attr-defined]
        filters=selectors.AuditFilters(
            actor=filters.actor or "",
            actor_kind=filters.actor_kind or "",
            action=filters.action or "",
            target=filters.target or "",
            since=filters.since,
            until=filters.until,
        ),
    )
    return {"items": [audit_event_out(e) for e in events[start:end]], "count": events.count()}
