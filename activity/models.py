"""The audit log (append-only) and outbound webhooks to customers' systems.

`AuditEvent` rows are written by `activity.services.audit_record` from the services, so pages,
the API and tasks are all covered. Nothing in the portal, the admin or the API edits or deletes
them; the model itself refuses updates and single deletes (an organization's deletion still
takes its log with it).

`WebhookEndpoint` is a customer URL with the events it wants and a signing secret (encrypted at
rest, shown once); `OutboundDelivery` is one event sent to one endpoint, with its attempts.
(`portal.WebhookDelivery` is the other direction: deliveries bitHuman sends us.)
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.utils import timezone

from portal.crypto import EncryptedTextField
from portal.scoping import OrgScopedModel, OrgScopedQuerySet


class ActorKind(models.TextChoices):
    USER = "user", "Person"
    API_KEY = "api_key", "API key"
    STAFF = "staff", "Staff (admin site)"
    SYSTEM = "system", "System"


class AuditAction(models.TextChoices):
    AGENT_CREATED = "agent.created", "Agent generated"
    AGENT_RETRIED = "agent.retried", "Agent retried"
    AGENT_IMPORTED = "agent.imported", "Agent imported from bitHuman"
    AGENT_DELETED = "agent.deleted", "Agent deleted"
    AGENT_READY = "agent.ready", "Agent ready"
    AGENT_FAILED = "agent.failed", "Agent failed"
    AGENT_PROMPT_CHANGED = "agent.prompt_changed", "Prompt changed"
    AGENT_MODEL_ADDED = "agent.model_added", "Model added to an agent"
    SESSION_STARTED = "session.started", "Session started"
    SESSION_ENDED = "session.ended", "Session ended"
    SESSION_SPEAK = "session.speak", "Speak sent"
    SESSION_CONTEXT = "session.context", "Context sent"
    RUNTIME_SESSION_TERMINATED = "runtime_session.terminated", "Live session terminated"
    RUNTIME_KEYS_REVOKED = "runtime.revoked_all", "All runtime keys revoked"
    MEMBER_INVITED = "member.invited", "Member invited"
    MEMBER_JOINED = "member.joined", "Member joined"
    MEMBER_ROLE_CHANGED = "member.role_changed", "Role changed"
    MEMBER_REMOVED = "member.removed", "Member removed"
    INVITATION_RESENT = "invitation.resent", "Invitation resent"
    INVITATION_REVOKED = "invitation.revoked", "Invitation revoked"
    API_KEY_CREATED = "api_key.created", "API key created"
    API_KEY_REVOKED = "api_key.revoked", "API key revoked"
    CONNECTION_CHANGED = "connection.changed", "bitHuman connection changed"
    WEBHOOK_CREATED = "webhook.created", "Webhook endpoint created"
    WEBHOOK_UPDATED = "webhook.updated", "Webhook endpoint changed"
    WEBHOOK_DELETED = "webhook.deleted", "Webhook endpoint deleted"
    WEBHOOK_SECRET_ROTATED = "webhook.secret_rotated", "Webhook secret rotated"
    WEBHOOK_DISABLED = "webhook.disabled", "Webhook endpoint disabled"
    ORG_SUSPENDED = "organization.suspended", "Organization suspended"
    ORG_UNSUSPENDED = "organization.unsuspended", "Suspension lifted"
    STAFF_ADDED = "staff.added", "Staff added an object"
    STAFF_CHANGED = "staff.changed", "Staff changed an object"
    STAFF_DELETED = "staff.deleted", "Staff deleted an object"
    TWO_FACTOR_REQUIRED = "organization.two_factor", "Two-factor requirement changed"
    IMPERSONATION_STARTED = "impersonation.started", "Staff impersonation started"
    IMPERSONATION_ENDED = "impersonation.ended", "Staff impersonation ended"
    IMPERSONATION_WRITE = "impersonation.write", "Change made by impersonating staff"


class AppendOnlyError(Exception):
    """Audit entries are never changed or deleted one by one."""


class AuditEventQuerySet(OrgScopedQuerySet):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("Audit entries cannot be changed.")


class AuditEvent(OrgScopedModel):
    """Who did what to which object of the organization, and when."""

    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_api_key = models.ForeignKey(
        "portal.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text so the entry still says who it was after the user or key is gone.
    actor_label = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=40, choices=AuditAction.choices)
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = AuditEventQuerySet.as_manager()  # type: ignore[misc]

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["organization", "action", "-created_at"]),
            models.Index(fields=["organization", "target_type", "target_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label or self.actor_kind} {self.action} {self.target_label}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Audit entries cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("Audit entries cannot be deleted.")


class WebhookEvent(models.TextChoices):
    AGENT_READY = "agent.ready", "agent.ready: an agent finished generating"
    AGENT_FAILED = "agent.failed", "agent.failed: an agent's generation failed"
    SESSION_STARTED = "session.started", "session.started: a session opened"
    SESSION_ENDED = "session.ended", "session.ended: a session ended"
    SESSION_MESSAGE = (
        "session.message",
        "session.message: speak or context sent (with outcome), or a visitor's or the avatar's "
        "line from bitHuman's transcript",
    )


TEST_EVENT = "test.ping"


class WebhookEndpointQuerySet(OrgScopedQuerySet):
    def enabled(self) -> WebhookEndpointQuerySet:
        return self.filter(enabled=True)


class WebhookEndpoint(OrgScopedModel):
    url = models.URLField("URL", max_length=500)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list)
    # Signing secrets (`whsec_...`), encrypted at rest. During a rotation both sign.
    secret = EncryptedTextField()
    previous_secret = EncryptedTextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    # The first failed attempt since the last success; the sweep disables endpoints failing
    # for longer than WEBHOOK_DISABLE_AFTER_DAYS.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = WebhookEndpointQuerySet.as_manager()  # type: ignore[misc]

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class OutboundDeliveryQuerySet(OrgScopedQuerySet):
    def due(self, now: Any) -> OutboundDeliveryQuerySet:
        return self.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)


class OutboundDelivery(OrgScopedModel):
    """One event for one endpoint. `body` is kept as sent, so every attempt signs the same bytes."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.CharField(max_length=40, db_index=True)
    event_type = models.CharField(max_length=40)
    body = models.TextField()
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    # The last attempt's request and response headers, shown on the delivery's page.
    request_headers = models.JSONField(default=dict, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    resent_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = OutboundDeliveryQuerySet.as_manager()  # type: ignore[misc]

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["endpoint", "-created_at"]),
        ]
        verbose_name_plural = "outbound deliveries"

    def __str__(self) -> str:
        return f"{self.event_type} to {self.endpoint_id} ({self.status})"

    @property
    def has_failed_attempt(self) -> bool:
        """Pending, but its last attempt failed (a retry is scheduled)."""
        return self.status == DeliveryStatus.PENDING and self.attempts > 0

    @property
    def failure_reason(self) -> str:
        if self.status == DeliveryStatus.SUCCEEDED:
            return ""
        if self.last_error:
            return self.last_error
        if self.last_status_code:
            return f"The receiver answered {self.last_status_code}"
        return ""
