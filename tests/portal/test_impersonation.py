"""Staff impersonation: started from the admin with a written reason, ended by the banner's Stop
or by the time box, and audited (start, stop, every write) in the organization's log."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django.urls import reverse

from activity.models import AuditEvent
from organizations import impersonation
from portal.models import ApiKey, User
from tests.conftest import AUTH_BACKEND, client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

REASON = "Ticket 4521: the customer cannot find their API keys"


@pytest.fixture
def staff(db):
    return User.objects.create_superuser(email="ops@example.com", password="staff-password-1")


@pytest.fixture
def staff_client(staff):
    client = Client()
    client.force_login(staff, backend=AUTH_BACKEND)
    return client


def _start(client: Client, target: User, reason: str = REASON):
    return client.post(
        reverse("admin:portal_user_impersonate", args=[target.pk]), {"reason": reason}
    )


def test_staff_start_with_a_reason_see_a_banner_and_every_write_is_audited(
    staff_client, owner, org
):
    target = owner.user
    page = staff_client.get(reverse("admin:portal_user_change", args=[target.pk]))
    assert b"See the portal as this user" in page.content
    refused = _start(staff_client, target, reason="because")
    assert refused.status_code == 200 and not AuditEvent.objects.exists()
    response = _start(staff_client, target)
    assert response.status_code == 302
    home = staff_client.get(reverse("org_home", args=[org.slug]))
    banner = home.content.decode()
    assert 'id="impersonation-banner"' in banner
    assert "signed in as <strong>" + target.email in banner and REASON in banner
    assert reverse("impersonation_stop") in banner

    staff_client.post(
        reverse("api_key_create", args=[org.slug]),
        {"name": "made by staff", "scopes": ["agents:read"]},
    )
    assert ApiKey.objects.filter(name="made by staff").exists()
    # The admin cannot be reached as the customer (they are not staff), and the customer's
    # password cannot be changed from here.
    assert staff_client.post(reverse("password_change"), {}).status_code == 403

    stopped = staff_client.post(reverse("impersonation_stop"))
    assert stopped["Location"] == reverse("admin:index")
    assert staff_client.get(reverse("admin:index")).status_code == 200  # the staff session again

    events = {e.action: e for e in AuditEvent.objects.for_org(org)}
    started = events["impersonation.started"]
    assert started.actor_kind == "staff" and started.actor_user.email == "ops@example.com"
    assert started.details["reason"] == REASON and started.details["impersonated"] == target.email
    write = events["impersonation.write"]
    assert write.details["method"] == "POST" and write.details["path"].endswith(
        "/settings/api-keys/"
    )
    assert events["api_key.created"].details["impersonated_by"] == "ops@example.com"
    assert events["impersonation.ended"].details["why"] == "stopped"
    # Visible to the organization's admins on the Activity page.
    log = client_for(owner).get(reverse("audit_log", args=[org.slug])).content.decode()
    assert "Staff impersonation started" in log and "Change made by impersonating staff" in log


def test_it_ends_by_itself_after_the_time_box(staff_client, owner, org, settings):
    _start(staff_client, owner.user)
    session = staff_client.session
    data = session[impersonation.SESSION_KEY]
    data["expires"] = time.time() - 1  # the time box has passed
    session[impersonation.SESSION_KEY] = data
    session.save()
    response = staff_client.get(reverse("org_home", args=[org.slug]))
    assert response["Location"] == reverse("admin:index")
    ended = AuditEvent.objects.for_org(org).get(action="impersonation.ended")
    assert ended.details["why"] == "time box"
    # Back as staff, not as the customer.
    assert int(staff_client.session["_auth_user_id"]) != owner.user.pk


def test_staff_cannot_be_impersonated_and_non_staff_cannot_start(staff_client, owner, db):
    other_staff = UserFactory(is_staff=True)
    assert b"Staff accounts cannot be impersonated" in _start(staff_client, other_staff).content
    # A customer (not staff) asking the admin URL gets the admin login, nothing else.
    response = client_for(owner).post(
        reverse("admin:portal_user_impersonate", args=[owner.user.pk]), {"reason": REASON}
    )
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not AuditEvent.objects.exists()


def test_an_organization_requiring_two_factor_is_seen_by_impersonating_staff(
    staff_client, owner, org
):
    org.require_two_factor = True
    org.save()
    _start(staff_client, owner.user)
    assert staff_client.get(reverse("org_home", args=[org.slug])).status_code == 200
