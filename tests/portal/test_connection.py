"""Each organization's bitHuman connection: Test mode by default, live secrets validated,
encrypted, masked and rotatable; the signed webhook receiver."""

import json
import time
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection as db
from django.test import Client
from django.urls import reverse

from organizations import connections, services
from portal import crypto
from portal.bithuman import webhooks
from portal.models import BithumanConnection, ConnectionMode, WebhookDelivery
from portal.tenancy import Role
from sandbox import services as sandbox_services
from sandbox.models import SandboxAccount
from tests.conftest import client_for
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def _raw_column(connection: BithumanConnection, column: str) -> str:
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM portal_bithumanconnection WHERE id = %s",  # noqa: S608
            [connection.pk],
        )
        return cursor.fetchone()[0]


def test_new_organization_starts_in_test_mode_with_its_own_sandbox_account(member):
    owner = MembershipFactory(organization=member.organization, role=Role.OWNER).user
    org = services.organization_create(name="Fresh Co", owner=owner)
    connection = BithumanConnection.objects.get(organization=org)
    assert connection.mode == ConnectionMode.TEST
    assert connection.sandbox_secret.startswith("sbx_")
    assert connection.api_secret == connection.sandbox_secret
    other = services.organization_create(name="Other Co", owner=owner)
    assert other.bithuman_connection.sandbox_secret != connection.sandbox_secret


def test_the_portal_mints_the_test_secret_and_the_sandbox_opens_its_account_on_first_use(
    org, settings
):
    """The portal never calls the sandbox's code: it mints a secret of the form the sandbox
    accepts, and the sandbox opens the account when the secret first reaches it."""
    secret = connections.connection_get(org=org).sandbox_secret
    assert sandbox_services.secret_well_formed(secret)
    assert not SandboxAccount.objects.filter(secret_hash=sandbox_services.secret_hash(secret))
    settings.SANDBOX_DEFAULT_PLAN, settings.SANDBOX_DEFAULT_CREDITS = "business", 1234
    account = sandbox_services.sandbox_account_for_secret(secret=secret)
    assert account is not None and (account.plan, account.credits) == ("business", 1234)


@pytest.mark.django_db(transaction=True)
def test_settings_show_plan_and_credits_from_the_sandbox(sandbox_api, org, admin):
    page = client_for(admin).get(reverse("org_settings", args=[org.slug])).content.decode()
    assert "Test" in page
    assert "credits" in page  # the balance came back from GET /v1/me over HTTP


@pytest.mark.django_db(transaction=True)
def test_live_secret_is_validated_saved_encrypted_and_masked(sandbox_api, org, admin):
    _account, secret = sandbox_services.sandbox_account_create(plan="pro", credits=1000)
    response = client_for(admin).post(
        reverse("connection_live", args=[org.slug]), {"api_secret": secret}, follow=True
    )
    page = response.content.decode()
    connection = BithumanConnection.objects.get(organization=org)
    assert connection.mode == ConnectionMode.LIVE
    assert connection.live_secret == secret
    assert secret not in page  # never rendered in full...
    assert "••••" + secret[-4:] in page  # ...only masked
    assert secret not in _raw_column(connection, "live_secret")  # encrypted at rest
    assert connection.webhook_id and connection.webhook_secret.startswith("whsec_")
    assert connection.webhook_secret not in _raw_column(connection, "webhook_secret")


@pytest.mark.django_db(transaction=True)
def test_invalid_live_secret_is_a_field_error_and_saves_nothing(sandbox_api, org, admin):
    before = connections.connection_get(org=org)
    response = client_for(admin).post(
        reverse("connection_live", args=[org.slug]), {"api_secret": "sbx_not_a_real_secret"}
    )
    assert response.status_code == 400
    assert "does not accept this API secret" in str(response.context["live_form"].errors)
    after = BithumanConnection.objects.get(organization=org)
    assert after.mode == ConnectionMode.TEST and after.live_secret == ""
    assert after.updated_at == before.updated_at


def test_members_cannot_change_the_connection(org, member):
    response = client_for(member).post(
        reverse("connection_live", args=[org.slug]), {"api_secret": "x"}
    )
    assert response.status_code == 403


def test_secrets_rotate_under_a_new_key(org, settings):
    connection = connections.connection_get(org=org)
    connection.live_secret = "live-secret-abcdef-1234"
    connection.save()
    old_token = _raw_column(connection, "live_secret")
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, *settings.FIELD_ENCRYPTION_KEYS]
    out = StringIO()
    call_command("encryption_rotate", stdout=out)
    assert "portal.BithumanConnection: 1 of 1 rows re-encrypted" in out.getvalue()
    new_token = _raw_column(connection, "live_secret")
    assert new_token != old_token and crypto.is_under_newest_key(new_token)
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key can now go
    assert BithumanConnection.objects.get(pk=connection.pk).live_secret == "live-secret-abcdef-1234"
    out = StringIO()
    call_command("encryption_rotate", stdout=out)
    assert "0 rows re-encrypted" in out.getvalue().splitlines()[-1]


def test_mask_shows_at_most_the_last_four_characters():
    assert crypto.mask("sbx_abcdefghijklmnop") == "••••mnop"
    assert crypto.mask("short") == "••••"
    assert crypto.mask("") == ""


# --- Webhook receiver ---------------------------------------------------------------------------


@pytest.fixture
def receiver(org):
    connection = connections.connection_get(org=org)
    connection.webhook_secret = "whsec_test_secret_value"
    connection.save()
    return connection


def _deliver(connection, body: dict, *, secret=None, timestamp=None, delivery_id="evt_1"):
    raw = json.dumps(body).encode()
    headers = webhooks.delivery_headers_build(
        secret=secret or connection.webhook_secret,
        raw_body=raw,
        event=body.get("event", "agent.ready"),
        delivery_id=delivery_id,
        timestamp=timestamp,
    )
    return Client().post(
        reverse("bithuman_webhook", args=[connection.receiver_token]),
        data=raw,
        content_type="application/json",
        headers=headers,
    )


BODY = {"id": "evt_1", "event": "agent.ready", "created": 1, "data": {"agent_id": "a", "code": "C"}}


def test_signed_delivery_is_recorded_once(receiver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as queued:
        assert _deliver(receiver, BODY).status_code == 200
        again = _deliver(receiver, BODY)
    assert len(queued) == 1  # the duplicate queued no work
    assert again.status_code == 200 and again.json()["duplicate"] is True
    delivery = WebhookDelivery.objects.get()
    assert delivery.event == "agent.ready" and delivery.organization_id == receiver.organization_id
    assert delivery.processed_at is not None  # the queued task ran (eagerly in tests)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"secret": "whsec_wrong"},
        {"timestamp": int(time.time()) - 301},  # replayed after the 5-minute window
    ],
)
def test_bad_or_stale_signatures_are_400_and_change_nothing(receiver, kwargs):
    response = _deliver(receiver, BODY, **kwargs)
    assert response.status_code == 400
    assert not WebhookDelivery.objects.exists()


def test_unknown_receiver_is_400(receiver):
    response = Client().post(
        reverse("bithuman_webhook", args=["nope"]), data=b"{}", content_type="application/json"
    )
    assert response.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_live_secret_saved_even_when_webhook_registration_is_refused(
    sandbox_api, org, admin, settings
):
    settings.SANDBOX_WEBHOOK_ALLOW_LOCAL = False  # like bitHuman: http://testserver is refused
    _account, secret = sandbox_services.sandbox_account_create()
    response = client_for(admin).post(
        reverse("connection_live", args=[org.slug]), {"api_secret": secret}, follow=True
    )
    assert "did not register the portal&#x27;s webhook" in response.content.decode()
    connection = BithumanConnection.objects.get(organization=org)
    assert connection.mode == ConnectionMode.LIVE and connection.webhook_id == ""


def test_a_captured_delivery_replayed_under_a_new_delivery_header_is_a_duplicate(
    receiver, django_capture_on_commit_callbacks
):
    """The delivery header is not signed: deduplication keys on the event's id in the body."""
    with django_capture_on_commit_callbacks(execute=True) as queued:
        assert _deliver(receiver, BODY, delivery_id="evt_1").status_code == 200
        replayed = _deliver(receiver, BODY, delivery_id="evt_forged_new_id")
    assert replayed.status_code == 200 and replayed.json()["duplicate"] is True
    assert len(queued) == 1
    assert WebhookDelivery.objects.get().delivery_id == "evt_1"


def _deliver_raw(connection, raw: bytes):
    headers = webhooks.delivery_headers_build(
        secret=connection.webhook_secret, raw_body=raw, event="agent.ready", delivery_id="evt_h"
    )
    return Client(raise_request_exception=False).post(
        reverse("bithuman_webhook", args=[connection.receiver_token]),
        data=raw,
        content_type="application/json",
        headers=headers,
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"id": "evt_n", "event": "agent.ready", "data": {"progress": NaN}}',
        b'{"id": "evt_i", "event": "agent.ready", "data": {"progress": Infinity}}',
        b'{"id": "evt_s", "event": "agent.ready", "data": {"code": "\\ud800"}}',
        b'{"id": "evt_\\udfff", "event": "agent.ready", "data": {}}',
        b'{"id": 7, "event": "agent.ready", "data": {}}',
        b'{"id": ["evt_l"], "event": "agent.ready", "data": {}}',
        b'{"id": "evt_e", "event": {"a": 1}, "data": {}}',
        b'{"id": "evt_d", "event": "agent.ready", "data": "not an object"}',
        b'{"event": "agent.ready", "data": {}}',
        b'["evt_list", "agent.ready"]',
        b'"just a string"',
        b"\xff\xfe not utf-8",
        b'{"id": "evt_x", "event": "agent.ready", "data": {"code": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}}",
    ],
)
def test_a_signed_but_unusable_body_is_400_and_records_nothing(receiver, raw):
    response = _deliver_raw(receiver, raw)
    assert response.status_code == 400, response.content[:200]
    assert not WebhookDelivery.objects.exists()
