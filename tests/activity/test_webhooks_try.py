"""Webhooks you can try: local receivers in development and Test mode (production rules stay),
a real signed delivery to a real local HTTP receiver shown with its request and response,
failed deliveries saying Failed with the reason, verification code on the page, default events
and errors under the right field."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest

from activity import outbound, services
from activity.models import DeliveryStatus, OutboundDelivery, WebhookEndpoint
from portal.errors import ApplicationError
from portal.models import BithumanConnection, ConnectionMode
from portal.tenancy import Role
from tests.activity.conftest import Receiver
from tests.conftest import client_for
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _send_at_once(monkeypatch):
    monkeypatch.setattr(services.transaction, "on_commit", lambda fn, *a, **k: fn())


@pytest.fixture
def admin(org):
    return MembershipFactory(organization=org, role=Role.ADMIN)


@pytest.fixture
def local_receiver():
    r = Receiver()
    yield r
    r.close()


def _production(settings, site="https://portal.example.com"):
    settings.DEBUG = False
    settings.WEBHOOK_ALLOW_LOCAL = False
    settings.SITE_URL = site


def _set_mode(org, mode):
    BithumanConnection.objects.update_or_create(organization=org, defaults={"mode": mode})


def test_development_accepts_a_local_http_receiver(org, admin, settings, local_receiver):
    _production(settings)
    settings.DEBUG = True  # make run
    created = services.webhook_endpoint_create(
        actor=admin, url=local_receiver.url, events=["agent.ready"]
    )
    assert created.endpoint.url.startswith("http://127.0.0.1:")


def test_production_refuses_local_receivers_even_in_test_mode(org, admin, settings):
    _production(settings)
    _set_mode(org, ConnectionMode.TEST)
    for url in (
        "http://127.0.0.1:9000/hooks",
        "https://127.0.0.1/hooks",
        "http://hooks.example.com/",
    ):
        with pytest.raises(ApplicationError):
            services.webhook_endpoint_create(actor=admin, url=url, events=["agent.ready"])
    assert not WebhookEndpoint.objects.exists()


def test_a_local_install_accepts_local_receivers_in_test_mode_only(org, admin, settings):
    _production(settings, site="http://127.0.0.1:8000")
    _set_mode(org, ConnectionMode.TEST)
    services.webhook_endpoint_create(
        actor=admin, url="http://127.0.0.1:9000/hooks", events=["agent.ready"]
    )
    _set_mode(org, ConnectionMode.LIVE)
    with pytest.raises(ApplicationError):
        services.webhook_endpoint_create(
            actor=admin, url="http://127.0.0.1:9001/hooks", events=["agent.ready"]
        )
    assert WebhookEndpoint.objects.count() == 1


def test_a_real_delivery_in_development_is_signed_succeeds_and_shows_its_payload(
    org, admin, settings, local_receiver
):
    """The page flow of `make run`: add a local endpoint, send a test event, read the delivery."""
    _production(settings)
    settings.DEBUG = True
    client = client_for(admin)
    page = client.post(
        f"/o/{org.slug}/activity/webhooks/",
        {"url": local_receiver.url, "events": ["agent.ready"]},
    )
    assert page.status_code == 200
    secret = re.search(r"whsec_[\w-]+", page.content.decode()).group(0)
    endpoint = WebhookEndpoint.objects.get()
    client.post(f"/o/{org.slug}/activity/webhooks/{endpoint.public_id}/test/")

    (request,) = local_receiver.requests
    header = request["headers"]["Portal-Signature"]
    timestamp = re.search(r"t=(\d+)", header).group(1)
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256
    ).hexdigest()
    assert f"v1={expected}" in header
    delivery = OutboundDelivery.objects.get()
    assert delivery.status == DeliveryStatus.SUCCEEDED

    log = client.get(f"/o/{org.slug}/activity/webhooks/{endpoint.public_id}/").content.decode()
    assert "Succeeded" in log
    detail = client.get(f"/o/{org.slug}/activity/webhooks/deliveries/{delivery.public_id}/")
    html = detail.content.decode()
    assert detail.status_code == 200
    assert json.loads(request["body"])["id"] in html and "test.ping" in html
    assert "Portal-Signature" in html and "Status <strong>200</strong>" in html
    assert "Content-Type" in html and "ok" in html
    assert secret not in html  # the signature is shown, never the secret


def test_a_failed_test_ping_says_failed_with_the_reason(org, admin, local_receiver):
    endpoint = services.webhook_endpoint_create(
        actor=admin, url=local_receiver.url, events=["agent.ready"]
    ).endpoint
    local_receiver.script = [500]
    client = client_for(admin)
    client.post(f"/o/{org.slug}/activity/webhooks/{endpoint.public_id}/test/")
    delivery = OutboundDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED  # a test ping is not retried
    html = client.get(f"/o/{org.slug}/activity/webhooks/{endpoint.public_id}/").content.decode()
    assert "badge-delivery-failed" in html and "The receiver answered 500" in html
    assert "Pending" not in html
    detail = client.get(f"/o/{org.slug}/activity/webhooks/deliveries/{delivery.public_id}/")
    assert "receiver says no" in detail.content.decode()


def test_a_failed_event_being_retried_says_failed_with_the_reason(org, admin, local_receiver):
    endpoint = services.webhook_endpoint_create(
        actor=admin, url=local_receiver.url, events=["agent.ready"]
    ).endpoint
    local_receiver.close()  # nobody listens: connection refused
    outbound.webhook_emit(org=org, event_type="agent.ready", data={})
    delivery = OutboundDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    html = client_for(admin).get(f"/o/{org.slug}/activity/webhooks/{endpoint.public_id}/")
    text = html.content.decode()
    assert "Failed" in text and "Could not connect" in text and "retrying at" in text


def test_the_page_shows_verification_code_and_ticks_default_events(org, admin):
    html = client_for(admin).get(f"/o/{org.slug}/activity/webhooks/").content.decode()
    assert "README" not in html
    assert "def portal_signature_valid" in html and "crypto.createHmac" in html
    assert "whsec_your_signing_secret" in html
    for event in ("agent.ready", "agent.failed", "session.started", "session.ended"):
        assert re.search(rf'value="{re.escape(event)}"[^>]*checked', html), event
    assert not re.search(r'value="session.message"[^>]*checked', html)


def test_the_new_secret_appears_in_the_verification_code(org, admin, local_receiver):
    page = client_for(admin).post(
        f"/o/{org.slug}/activity/webhooks/",
        {"url": local_receiver.url, "events": ["agent.ready"]},
    )
    secret = re.search(r"whsec_[\w-]+", page.content.decode()).group(0)
    assert f'SECRET = "{secret}"' in page.content.decode()
    assert f'const SECRET = "{secret}"' in page.content.decode()


def test_the_node_snippet_verifies_a_real_delivery(org, admin, local_receiver, tmp_path):
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    page = client_for(admin).post(
        f"/o/{org.slug}/activity/webhooks/",
        {"url": local_receiver.url, "events": ["agent.ready"]},
    )
    html = page.content.decode()
    import html as htmllib

    code = htmllib.unescape(re.search(r'<code id="verify-node">(.*?)</code>', html, re.S).group(1))
    outbound.webhook_emit(org=org, event_type="agent.ready", data={"id": "a1"})
    (request,) = local_receiver.requests
    (tmp_path / "verify.js").write_text(code)
    (tmp_path / "body").write_bytes(request["body"])
    header = json.dumps(request["headers"]["Portal-Signature"])
    script = (
        "const {portalSignatureValid} = require('./verify.js');"
        "const body = require('fs').readFileSync('body');"
        f"console.log(portalSignatureValid(body, {header}),"
        f" portalSignatureValid(Buffer.concat([body, Buffer.from(' ')]), {header}))"
    )
    out = subprocess.run([node, "-e", script], cwd=tmp_path, capture_output=True, text=True)
    assert out.stdout.split() == ["true", "false"], out.stderr


def test_the_python_snippet_verifies_a_real_delivery(org, admin, local_receiver):
    import html as htmllib

    page = client_for(admin).post(
        f"/o/{org.slug}/activity/webhooks/",
        {"url": local_receiver.url, "events": ["agent.ready"]},
    )
    html = page.content.decode()
    code = htmllib.unescape(
        re.search(r'<code id="verify-python">(.*?)</code>', html, re.S).group(1)
    )
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 (our own page)
    outbound.webhook_emit(org=org, event_type="agent.ready", data={"id": "a1"})
    (request,) = local_receiver.requests
    verify = namespace["portal_signature_valid"]
    assert verify(request["body"], request["headers"]["Portal-Signature"])
    assert not verify(request["body"] + b" ", request["headers"]["Portal-Signature"])


def test_an_events_error_shows_under_events(org, admin, local_receiver):
    page = client_for(admin).post(
        f"/o/{org.slug}/activity/webhooks/", {"url": local_receiver.url, "description": "x"}
    )
    html = page.content.decode()
    assert page.status_code == 400
    fieldset = re.search(r'<fieldset id="events-field">(.*?)</fieldset>', html, re.S).group(1)
    assert "errorlist" in fieldset
    description_to_fieldset = html.split('name="description"', 1)[1].split("events-field", 1)[0]
    assert "errorlist" not in description_to_fieldset
