"""Staff views of the audit log and webhooks: read-only (audit entries are never edited)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from activity.models import AuditEvent, OutboundDelivery, WebhookEndpoint
from portal.admin import OrganizationFilter


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "organization",
        "actor_kind",
        "actor_label",
        "action",
        "target_label",
        "ip_address",
    ]
    list_filter = [OrganizationFilter, "action", "actor_kind"]
    search_fields = ["organization__slug", "actor_label", "target_label", "target_id"]
    date_hierarchy = "created_at"
    list_select_related = ["organization"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    list_display = ["url", "organization", "enabled", "failing_since", "created_at"]
    list_filter = [OrganizationFilter, "enabled"]
    search_fields = ["organization__slug", "url"]
    # The signing secrets are never shown.
    fields = readonly_fields = (
        "organization",
        "url",
        "description",
        "events",
        "enabled",
        "disabled_reason",
        "failing_since",
        "created_at",
    )


@admin.register(OutboundDelivery)
class OutboundDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
    ]
    list_filter = ["status", "event_type"]
    search_fields = ["event_id", "organization__slug"]
    list_select_related = ["endpoint"]
    readonly_fields = [f.name for f in OutboundDelivery._meta.fields]
