"""The audit log over REST: `GET /api/v1/audit-events` (scope `audit:read`), read-only."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Schema
from pydantic import Field

from activity import selectors
from activity.models import AuditEvent
from portal.apisupport import MAX_OFFSET, ListQuery, Text, page_bounds, scope_require
from portal.models import ApiScope

router = Router(tags=["audit"])


class AuditEventOut(Schema):
    id: str = Field(description="The event's id.")
    created_at: datetime = Field(description="When it happened.")
    actor_kind: str = Field(description="Who acted: user, api_key, staff or system.")
    actor: str = Field(description="The person's email or the API key's name.")
    action: str = Field(description="What happened, for example agent.created.")
    target_type: str = Field(description="Kind of object acted on.")
    target_id: str = Field(description="Id of the object acted on.")
    target: str = Field(description="Name of the object when it happened.")
    details: dict[str, Any] = Field(
        description="Facts about the action, such as changed fields with old and new values."
    )
    ip_address: str | None = Field(description="Address the request came from, when known.")


class AuditEventList(Schema):
    items: list[AuditEventOut] = Field(description="This page of events, newest first.")
    count: int = Field(description="How many events match, over all pages.")


class AuditEventQuery(Schema):
    actor: Text | None = Field(
        default=None, max_length=254, description="Only events by this email or API key name."
    )
    actor_kind: Text | None = Field(
        default=None,
        description="Only events by this kind of actor: user, api_key, staff or system.",
    )  # Text: a NUL would reach PostgreSQL and fail there
    action: Text | None = Field(
        default=None, max_length=40, description="Only this action, for example agent.created."
    )
    target: Text | None = Field(
        default=None, max_length=200, description="Only events whose target matches this text."
    )
    since: date | None = Field(default=None, description="Only events on or after this date.")
    until: date | None = Field(default=None, description="Only events on or before this date.")
    limit: int = Field(default=20, ge=1, le=100, description="Page size, 1 to 100.")
    offset: int = Field(
        default=0, ge=0, le=MAX_OFFSET, description="How many matching events to skip."
    )


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
