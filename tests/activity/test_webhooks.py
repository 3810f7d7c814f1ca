"""Outbound webhooks: signatures (checked with the README's snippet), retries with backoff
against a local receiver, resend, secret rotation, SSRF refusals, disabling, and the pages."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.core import mail
from django.utils import timezone

from activity import outbound, services
from activity.models import AuditEvent, DeliveryStatus, OutboundDelivery, WebhookEndpoint
from portal.errors import ApplicationError
from portal.tenancy import Role
from tests.conftest import client_for
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_verifier():
    """The copy-paste snippet of the README's Webhooks section, executed as is."""
    section = README.read_text().split("## Webhooks", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 (our own documentation)
    return namespace["portal_signature_valid"]


@pytest.fixture(autouse=True)
def _send_at_once(monkeypatch):
    """Deliveries go out after commit; these tests run inside one transaction."""
    monkeypatch.setattr(services.transaction, "on_commit", lambda fn, *a, **k: fn())


@pytest.fixture(autouse=True)
def _public_portal(settings):
    """A portal on a public address: the production rules for webhook URLs apply (a portal on
    a loopback address lets Test-mode organizations use local receivers)."""
    settings.SITE_URL = "https://portal.example.com"


@pytest.fixture
def admin(org):
    return MembershipFactory(organization=org, role=Role.ADMIN)


def _endpoint(admin, url, events=("agent.ready",)):
    return services.webhook_endpoint_create(actor=admin, url=url, events=list(events))


def test_delivery_is_signed_and_verifies_with_the_readme_snippet(org, admin, receiver):
    created = _endpoint(admin, receiver.url)
    assert created.secret.startswith("whsec_")
    outbound.webhook_emit(org=org, event_type="agent.ready", data={"id": "a1"})
    (request,) = receiver.requests
    body = json.loads(request["body"])
    assert set(body) == {"id", "type", "created", "data"} and body["type"] == "agent.ready"
    verify = readme_verifier()
    header = request["headers"]["Portal-Signature"]
    assert verify(request["body"], header, created.secret)
    assert not verify(request["body"] + b" ", header, created.secret)
    assert not verify(request["body"], header, "whsec_wrong")
    delivery = OutboundDelivery.objects.get()
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempts == 1
    assert delivery.last_status_code == 200 and delivery.response_excerpt == "ok"


def test_failures_are_retried_with_backoff_then_succeed(org, admin, receiver):
    _endpoint(admin, receiver.url)
    receiver.script = [500, 503]
    start = timezone.now()
    outbound.webhook_emit(org=org, event_type="agent.ready", data={})
    delivery = OutboundDelivery.objects.get()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert delivery.last_status_code == 500 and "receiver says no" in delivery.response_excerpt
    first_wait = delivery.next_attempt_at - start
    assert timedelta(seconds=59) < first_wait < timedelta(seconds=70)
    assert WebhookEndpoint.objects.get().failing_since is not None

    assert outbound.deliveries_due() == []  # not yet
    later = delivery.next_attempt_at + timedelta(seconds=1)
    assert outbound.deliveries_due(now=later) == [delivery.pk]
    delivery = outbound.delivery_attempt(delivery_pk=delivery.pk, now=later)
    assert delivery.attempts == 2 and delivery.last_status_code == 503
    assert delivery.next_attempt_at - later == timedelta(seconds=300)
    # The same attempt cannot be claimed twice.
    assert outbound.delivery_attempt(delivery_pk=delivery.pk, now=later) is None

    last = delivery.next_attempt_at
    delivery = outbound.delivery_attempt(delivery_pk=delivery.pk, now=last)
    assert delivery.status == "succeeded" and delivery.attempts == 3
    assert len(receiver.requests) == 3
    assert len({r["body"] for r in receiver.requests}) == 1  # the same event each time
    assert WebhookEndpoint.objects.get().failing_since is None


def test_timeouts_fail_and_the_last_attempt_marks_the_delivery_failed(
    org, admin, receiver, settings
):
    settings.WEBHOOK_TIMEOUT = 0.3
    settings.WEBHOOK_RETRY_SCHEDULE = (1, 1)
    _endpoint(admin, receiver.url)
    receiver.script = [1.0, 500, 500]
    outbound.webhook_emit(org=org, event_type="agent.ready", data={})
    delivery = OutboundDelivery.objects.get()
    assert delivery.last_status_code is None and "No answer within" in delivery.last_error
    for _ in range(2):
        delivery = outbound.delivery_attempt(delivery_pk=delivery.pk, now=delivery.next_attempt_at)
    assert delivery.status == "failed" and delivery.attempts == 3
    assert delivery.next_attempt_at is None


def test_resend_sends_the_same_event_again(org, admin, receiver):
    endpoint = _endpoint(admin, receiver.url).endpoint
    receiver.script = [500]
    outbound.webhook_emit(org=org, event_type="agent.ready", data={"x": 1})
    original = OutboundDelivery.objects.get()
    client = client_for(admin)
    response = client.post(
        f"/o/{org.slug}/activity/webhooks/deliveries/{original.public_id}/resend/"
    )
    assert response.status_code == 302
    resent = OutboundDelivery.objects.exclude(pk=original.pk).get()
    assert resent.event_id == original.event_id and resent.body == original.body
    assert resent.status == "succeeded" and resent.resent_from == original
    assert json.loads(receiver.requests[1]["body"])["id"] == original.event_id
    page = client.get(f"/o/{org.slug}/activity/webhooks/{endpoint.public_id}/")
    assert original.event_id in page.content.decode()


def test_rotation_signs_with_both_secrets_during_the_overlap(org, admin, receiver, settings):
    created = _endpoint(admin, receiver.url)
    client = client_for(admin)
    response = client.post(
        f"/o/{org.slug}/activity/webhooks/{created.endpoint.public_id}/rotate/",
        {"confirmed": "yes"},
    )
    new_secret = re.search(r"whsec_[A-Za-z0-9_-]+", response.content.decode()).group(0)
    assert new_secret != created.secret
    outbound.webhook_emit(org=org, event_type="agent.ready", data={})
    verify = readme_verifier()
    request = receiver.requests[-1]
    header = request["headers"]["Portal-Signature"]
    assert header.count("v1=") == 2
    assert verify(request["body"], header, new_secret)
    assert verify(request["body"], header, created.secret)
    # After the overlap only the new secret signs.
    WebhookEndpoint.objects.update(previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    outbound.webhook_emit(org=org, event_type="agent.ready", data={})
    request = receiver.requests[-1]
    header = request["headers"]["Portal-Signature"]
    assert header.count("v1=") == 1 and not verify(request["body"], header, created.secret)
    assert AuditEvent.objects.filter(action="webhook.secret_rotated").count() == 1
    # The secret is never on the page again.
    page = client.get(f"/o/{org.slug}/activity/webhooks/{created.endpoint.public_id}/")
    assert new_secret not in page.content.decode()


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x",
        "https://[::ffff:192.168.0.1]/x",
        "https://localhost/x",
        "https://metadata.google.internal/x",
        "ftp://example.com/x",
        # Numeric spellings of loopback and metadata addresses (decimal, octal, hex, short).
        "https://2130706433/x",
        "https://0177.0.0.1/x",
        "https://0x7f.0.0.1/x",
        "https://0x7f000001/x",
        "https://127.1/x",
        "https://2852039166/latest/meta-data",
        "https://[::ffff:7f00:1]/x",
        "https://[0:0:0:0:0:ffff:127.0.0.1]/x",
        "https://[fd00::1]/x",
        "https://[fe80::1]/x",
        "https://localhost./x",
    ],
)
def test_private_and_non_https_urls_are_refused(org, admin, url):
    with pytest.raises(ApplicationError):
        _endpoint(admin, url)
    assert not WebhookEndpoint.objects.exists()


def test_redirects_are_never_followed(org, admin, receiver):
    """A receiver answering a redirect (say to an internal address) gets no second request: the
    delivery fails with the 3xx and is retried at the same URL."""
    from tests.activity.conftest import Receiver

    internal = Receiver()
    try:
        _endpoint(admin, receiver.url)
        receiver.script = [(307, internal.url)]
        outbound.webhook_emit(org=org, event_type="agent.ready", data={})
        delivery = OutboundDelivery.objects.get()
        assert delivery.status != DeliveryStatus.SUCCEEDED and delivery.last_status_code == 307
        assert len(receiver.requests) == 1 and internal.requests == []
    finally:
        internal.close()


def test_hosts_resolving_to_private_addresses_are_refused_at_save_and_delivery(
    org, admin, monkeypatch, settings
):
    from portal import netsafe

    answers = {"hooks.example.com": ["93.184.216.34"]}
    monkeypatch.setattr(netsafe, "host_resolve", lambda host, port: answers[host])
    endpoint = _endpoint(admin, "https://hooks.example.com/x").endpoint
    # DNS changes to a private address: the delivery is refused before connecting.
    answers["hooks.example.com"] = ["10.0.0.7"]
    outbound.webhook_emit(org=org, event_type="agent.ready", data={})
    delivery = OutboundDelivery.objects.get(endpoint=endpoint)
    assert delivery.last_status_code is None and "private" in delivery.last_error
    page = client_for(admin).post(
        f"/o/{org.slug}/activity/webhooks/",
        {"url": "https://hooks.example.com/y", "events": ["agent.ready"]},
    )
    assert page.status_code == 400 and "private" in page.content.decode()


def test_endpoints_failing_for_days_are_disabled_with_a_notice(org, admin, owner, receiver):
    endpoint = _endpoint(admin, receiver.url).endpoint
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        failing_since=timezone.now() - timedelta(days=4)
    )
    assert outbound.endpoints_disable_failing() == 1
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "every delivery failed" in endpoint.disabled_reason
    assert AuditEvent.objects.get(action="webhook.disabled").actor_kind == "system"
    assert set(mail.outbox[0].to) == {admin.user.email, owner.user.email}
    page = client_for(admin).get(f"/o/{org.slug}/activity/webhooks/")
    assert "is disabled" in page.content.decode()
    assert outbound.webhook_emit(org=org, event_type="agent.ready", data={}) == 0


def test_pages_create_show_the_secret_once_and_send_a_test_event(org, admin, member, receiver):
    client = client_for(admin)
    response = client.post(
        f"/o/{org.slug}/activity/webhooks/",
        {"url": receiver.url, "description": "CRM", "events": ["agent.ready", "session.ended"]},
    )
    assert response.status_code == 200 and "whsec_" in response.content.decode()
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["agent.ready", "session.ended"]
    client.post(f"/o/{org.slug}/activity/webhooks/{endpoint.public_id}/test/")
    assert json.loads(receiver.requests[0]["body"])["type"] == "test.ping"
    assert client_for(member).get(f"/o/{org.slug}/activity/webhooks/").status_code == 403
    client.post(
        f"/o/{org.slug}/activity/webhooks/{endpoint.public_id}/delete/", {"confirmed": "yes"}
    )
    assert not WebhookEndpoint.objects.exists()
    assert [e.action for e in AuditEvent.objects.order_by("id")] == [
        "webhook.created",
        "webhook.deleted",
    ]


def test_the_sweep_task_sends_due_retries(org, admin, receiver):
    from activity import tasks

    _endpoint(admin, receiver.url)
    receiver.script = [500]
    outbound.webhook_emit(org=org, event_type="agent.ready", data={})
    OutboundDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert tasks.outbound_deliveries_sweep.delay().get() == 1
    assert OutboundDelivery.objects.get().status == "succeeded"
