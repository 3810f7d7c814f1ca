"""Staff actions in Django admin on an organization's data also go to that organization's
audit log: every admin LogEntry (add, change, delete) of an object that belongs to one."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db.models.signals import post_save
from django.dispatch import receiver

from activity.models import AuditAction, AuditEvent
from portal.models import Organization

_ACTIONS = {
    ADDITION: AuditAction.STAFF_ADDED,
    CHANGE: AuditAction.STAFF_CHANGED,
    DELETION: AuditAction.STAFF_DELETED,
}


def organization_of(obj: Any) -> Organization | None:
    """The organization an object belongs to (directly, or through its agent or session)."""
    if isinstance(obj, Organization):
        return obj
    for path in ("organization", "agent", "session", "endpoint"):
        related = getattr(obj, path, None) if hasattr(obj, f"{path}_id") else None
        if related is None:
            continue
        if isinstance(related, Organization):
            return related
        return organization_of(related)
    return None


@receiver(post_save, sender=LogEntry, dispatch_uid="activity_staff_action")
def staff_action_record(
    sender: type[LogEntry], instance: LogEntry, created: bool, **_: Any
) -> None:
    from activity import services

    if not created or instance.action_flag not in _ACTIONS:
        return
    try:
        obj = instance.get_edited_object()
    except Exception:  # the object is already gone, or its model is
        return
    if isinstance(obj, AuditEvent):
        return
    org = organization_of(obj)
    if org is None or not Organization.objects.filter(pk=org.pk).exists():
        return
    target = services.target_describe(obj)
    details: dict[str, Any] = {"object": instance.object_repr}
    if instance.change_message:
        details["change"] = instance.get_change_message()[:500]
    services.audit_record(
        org=org,
        actor=instance.user,
        action=_ACTIONS[instance.action_flag],
        target=obj if target else None,
        details=details,
        staff=True,
    )


def admin_bulk_deletions_hook() -> None:
    """Admin's "delete selected" logs several objects with bulk_create, which sends no
    post_save: record those entries too. (Single-object logs go through the receiver.)"""
    from django.contrib.admin import ModelAdmin

    original = ModelAdmin.log_deletions
    if getattr(original, "audited", False):
        return

    def log_deletions(self: ModelAdmin, request: Any, queryset: Any) -> Any:
        entries = original(self, request, queryset)
        if isinstance(entries, list) and len(entries) > 1:
            for entry in entries:
                staff_action_record(LogEntry, entry, True)
        return entries

    log_deletions.audited = True  # type: ignore[attr-defined]
    ModelAdmin.log_deletions = log_deletions  # type: ignore[method-assign]
