"""Outbound webhooks on the wire: the signed body, one delivery row per endpoint and event,
attempts after commit with retries and backoff, and disabling endpoints that keep failing."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from activity.models import (
    TEST_EVENT,
    AuditAction,
    DeliveryStatus,
    OutboundDelivery,
    WebhookEndpoint,
)
from activity.services import SIGNATURE_HEADER, audit_record, webhook_url_check
from portal import netsafe
from portal.errors import ApplicationError
from portal.models import Membership, Organization
from portal.tenancy import Role, role_require

logger = logging.getLogger(__name__)


# --- Outbound webhooks: signing and sending -----------------------------------------------------


def signature_compute(*, secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signing_secrets(endpoint: WebhookEndpoint, *, now: datetime | None = None) -> list[str]:
    """The current secret, and the previous one while its rotation overlap lasts."""
    now = now or timezone.now()
    found = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires and expires > now:
        found.append(endpoint.previous_secret)
    return found


def signature_header(*, endpoint: WebhookEndpoint, body: bytes, timestamp: int) -> str:
    parts = [f"t={timestamp}"]
    for secret in signing_secrets(endpoint):
        parts.append(f"v1={signature_compute(secret=secret, timestamp=timestamp, body=body)}")
    return ",".join(parts)


def event_body(*, event_type: str, data: dict[str, Any]) -> tuple[str, str]:
    """(event id, JSON body) of one event: `{"id", "type", "created", "data"}`."""
    event_id = "evt_" + uuid.uuid4().hex
    body = {"id": event_id, "type": event_type, "created": int(time.time()), "data": data}
    return event_id, json.dumps(body, default=str, separators=(",", ":"))


def _deliveries_create(
    *, org: Organization, endpoints: Iterable[WebhookEndpoint], event_type: str, data: dict
) -> list[OutboundDelivery]:
    event_id, body = event_body(event_type=event_type, data=data)
    now = timezone.now()
    return [
        OutboundDelivery.objects.create(
            organization=org,
            endpoint=endpoint,
            event_id=event_id,
            event_type=event_type,
            body=body,
            next_attempt_at=now,
        )
        for endpoint in endpoints
    ]


def _send_after_commit(deliveries: list[OutboundDelivery]) -> None:
    from activity import tasks

    for delivery in deliveries:
        pk = delivery.pk
        transaction.on_commit(lambda pk=pk: tasks.outbound_delivery_send.delay(pk))  # type: ignore[misc]


def webhook_emit(*, org: Organization, event_type: str, data: dict[str, Any]) -> int:
    """Record the event for every enabled endpoint subscribed to it; send after commit."""
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.for_org(org).enabled()
        if event_type in endpoint.events
    ]
    if not endpoints:
        return 0
    deliveries = _deliveries_create(org=org, endpoints=endpoints, event_type=event_type, data=data)
    _send_after_commit(deliveries)
    return len(deliveries)


def webhook_test_send(*, actor: Membership, endpoint: WebhookEndpoint) -> OutboundDelivery:
    role_require(actor, Role.ADMIN, "manage webhooks")
    data = {"message": "A test event from bitHuman Portal.", "endpoint": str(endpoint.public_id)}
    (delivery,) = _deliveries_create(
        org=actor.organization, endpoints=[endpoint], event_type=TEST_EVENT, data=data
    )
    _send_after_commit([delivery])
    return delivery


def delivery_resend(*, actor: Membership, delivery: OutboundDelivery) -> OutboundDelivery:
    """Send the same event (same id, same data) again as a new delivery with fresh attempts;
    receivers deduplicate by the event id."""
    role_require(actor, Role.ADMIN, "manage webhooks")
    copy = OutboundDelivery.objects.create(
        organization=delivery.organization,
        endpoint=delivery.endpoint,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        body=delivery.body,
        next_attempt_at=timezone.now(),
        resent_from=delivery,
    )
    _send_after_commit([copy])
    return copy


def _retry_delay(attempts: int) -> timedelta | None:
    """The wait before the next attempt after `attempts` failed ones; None: give up."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempts > len(schedule):
        return None
    return timedelta(seconds=schedule[attempts - 1])


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    duration_ms: int
    excerpt: str = ""
    error: str = ""
    request_headers: dict[str, str] | None = None
    response_headers: dict[str, str] | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _post(*, endpoint: WebhookEndpoint, body: bytes, event_type: str) -> AttemptResult:
    started = time.monotonic()

    def result(**kwargs: Any) -> AttemptResult:
        return AttemptResult(duration_ms=int((time.monotonic() - started) * 1000), **kwargs)

    try:
        # Again: DNS may have changed since.
        address = webhook_url_check(endpoint.url, org=endpoint.organization)
    except ApplicationError as error:
        return result(status_code=None, error=error.message)
    headers: dict[str, str] = {
        "Content-Type": "application/json",
        "User-Agent": "bitHuman-Portal-Webhooks/1",
        "Portal-Event": event_type,
        SIGNATURE_HEADER: signature_header(
            endpoint=endpoint, body=body, timestamp=int(time.time())
        ),
    }
    sent = dict(headers)  # as the receiver sees them (the signature is public, not the secret)
    try:
        response = netsafe.pinned_post(
            endpoint.url,
            address=address,
            content=body,
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT,
        )
    except httpx.TimeoutException:
        return result(
            status_code=None,
            error=f"No answer within {settings.WEBHOOK_TIMEOUT:g} s",
            request_headers=sent,
        )
    except httpx.HTTPError as error:
        return result(
            status_code=None,
            error=f"Could not connect: {type(error).__name__}",
            request_headers=sent,
        )
    refusal = (
        "" if 200 <= response.status_code < 300 else f"The receiver answered {response.status_code}"
    )
    return result(
        status_code=response.status_code,
        excerpt=response.text[:500],
        error=refusal,
        request_headers=sent,
        response_headers={k: v[:300] for k, v in list(response.headers.items())[:40]},
    )


def delivery_attempt(*, delivery_pk: int, now: datetime | None = None) -> OutboundDelivery | None:
    """One attempt of a due delivery. The claim is compare-and-set: a task and the sweep never
    send the same attempt twice."""
    now = now or timezone.now()
    lease = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT + 60)
    claimed = OutboundDelivery.objects.due(now).filter(pk=delivery_pk).update(next_attempt_at=lease)
    if not claimed:
        return None
    delivery = OutboundDelivery.objects.select_related("endpoint__organization").get(pk=delivery_pk)
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        OutboundDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED, next_attempt_at=None, last_error="Endpoint disabled"
        )
        return delivery
    outcome = _post(endpoint=endpoint, body=delivery.body.encode(), event_type=delivery.event_type)
    attempts = delivery.attempts + 1
    fields: dict[str, Any] = {
        "attempts": attempts,
        "last_attempt_at": now,
        "last_status_code": outcome.status_code,
        "last_duration_ms": outcome.duration_ms,
        "last_error": outcome.error[:300],
        "response_excerpt": outcome.excerpt,
        "request_headers": outcome.request_headers or {},
        "response_headers": outcome.response_headers or {},
    }
    if outcome.ok:
        fields |= {"status": DeliveryStatus.SUCCEEDED, "delivered_at": now, "next_attempt_at": None}
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
    else:
        # A test ping is not retried: whoever pressed "Send test event" wants the answer now.
        delay = None if delivery.event_type == TEST_EVENT else _retry_delay(attempts)
        if delay is None:
            fields |= {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
        else:
            fields["next_attempt_at"] = now + delay
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(
            failing_since=now
        )
    OutboundDelivery.objects.filter(pk=delivery.pk).update(**fields)
    delivery.refresh_from_db()
    return delivery


def deliveries_due(*, now: datetime | None = None, batch: int = 500) -> list[int]:
    """Deliveries whose next attempt is due (retries, and first sends a lost task missed)."""
    now = now or timezone.now()
    return list(
        OutboundDelivery.objects.due(now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:batch]
    )


def endpoints_disable_failing(*, now: datetime | None = None) -> int:
    """Disable endpoints that have failed every attempt for WEBHOOK_DISABLE_AFTER_DAYS and tell
    the organization's admins (an audit entry, a notice on the page and an email)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS)
    failing = WebhookEndpoint.objects.enabled().filter(failing_since__lt=cutoff)
    disabled = 0
    for endpoint in failing.select_related("organization"):
        reason = (
            f"Disabled on {now:%Y-%m-%d}: every delivery failed since "
            f"{endpoint.failing_since:%Y-%m-%d %H:%M} UTC."
        )
        with transaction.atomic():
            changed = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
                enabled=False, disabled_reason=reason
            )
            if not changed:
                continue
            OutboundDelivery.objects.filter(
                endpoint=endpoint, status=DeliveryStatus.PENDING
            ).update(status=DeliveryStatus.FAILED, next_attempt_at=None)
            audit_record(
                org=endpoint.organization,
                actor=None,
                action=AuditAction.WEBHOOK_DISABLED,
                target=endpoint,
                details={"reason": reason},
            )
        _admins_notify(endpoint=endpoint, reason=reason)
        disabled += 1
    return disabled


def _admins_notify(*, endpoint: WebhookEndpoint, reason: str) -> None:
    emails = list(
        Membership.objects.for_org(endpoint.organization)
        .filter(role__in=[Role.OWNER, Role.ADMIN])
        .values_list("user__email", flat=True)
    )
    if not emails:
        return
    try:
        _disabled_mail_send(endpoint=endpoint, reason=reason, emails=emails)
    except Exception:  # the endpoint is disabled either way; the page shows the notice
        logger.exception("Could not email the admins of %s", endpoint.organization.slug)


def _disabled_mail_send(*, endpoint: WebhookEndpoint, reason: str, emails: list[str]) -> None:
    send_mail(
        subject=f"Webhook endpoint disabled in {endpoint.organization.name}",
        message=(
            f"The webhook endpoint {endpoint.url} of {endpoint.organization.name} was disabled.\n"
            f"{reason}\nFix the receiver, then re-enable the endpoint on the Webhooks page."
        ),
        from_email=None,
        recipient_list=emails,
    )
