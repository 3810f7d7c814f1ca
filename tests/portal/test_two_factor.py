"""Two-factor sign-in (django-otp TOTP + recovery codes): set up, log in with a code, recovery
codes work once, turning it off; an organization that requires it sends members to set it up."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from activity.models import AuditEvent
from organizations import twofactor
from tests.conftest import client_for
from tests.factories import PASSWORD, MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_backoff(settings):
    """django-otp makes each wrong code wait 2^n seconds before the next try (kept in
    production); the tests try a right code right after a wrong one."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0


def code_for(device: TOTPDevice, offset: int = 1) -> str:
    """What the authenticator app shows, computed as the app does (RFC 6238). A code is used
    once: after the setup's (offset 0), the next one is a step later, within the tolerance."""
    value = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=offset)
    return f"{value:0{device.digits}d}"


def setup(client: Client, user) -> list[str]:
    page = client.get(reverse("two_factor"))
    assert page.status_code == 200 and b"data:image/svg+xml" in page.content
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    response = client.post(
        reverse("two_factor"), {"action": "confirm", "code": code_for(device, 0)}
    )
    assert response.status_code == 200, response.content
    codes = re.findall(r"<li><code>(\w+)</code></li>", response.content.decode())
    assert len(codes) == 10
    return codes


def _login(client: Client, email: str, password: str = PASSWORD):
    return client.post(reverse("login"), {"username": email, "password": password})


def test_setup_then_login_needs_the_code(member):
    user = member.user
    codes = setup(client_for(member), user)
    assert twofactor.enabled(user)
    client = Client()
    response = _login(client, user.email)
    assert response["Location"] == reverse("login_otp")
    # The password alone does not sign in.
    assert client.get(reverse("org_home", args=[member.organization.slug])).status_code == 302
    assert "_auth_user_id" not in client.session
    wrong = client.post(reverse("login_otp"), {"code": "000000"})
    assert b"That code is not right" in wrong.content
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    ok = client.post(reverse("login_otp"), {"code": code_for(device)})
    assert ok.status_code == 302
    assert client.get(reverse("org_home", args=[member.organization.slug])).status_code == 200
    # A recovery code works once.
    other = Client()
    _login(other, user.email)
    assert other.post(reverse("login_otp"), {"code": codes[0]}).status_code == 302
    again = Client()
    _login(again, user.email)
    assert b"That code is not right" in again.post(reverse("login_otp"), {"code": codes[0]}).content


def test_too_many_wrong_codes_send_back_to_the_password(member):
    setup(client_for(member), member.user)
    client = Client()
    _login(client, member.user.email)
    for _ in range(4):
        client.post(reverse("login_otp"), {"code": "123456"})
    response = client.post(reverse("login_otp"), {"code": "123456"})
    assert response["Location"] == reverse("login")
    assert client.get(reverse("login_otp"))["Location"] == reverse("login")


def test_a_wrong_setup_code_keeps_it_off_and_turning_off_needs_a_code(member):
    client = client_for(member)
    client.get(reverse("two_factor"))
    refused = client.post(reverse("two_factor"), {"action": "confirm", "code": "000000"})
    assert refused.status_code == 400 and not twofactor.enabled(member.user)
    setup(client, member.user)
    refused = client.post(reverse("two_factor"), {"action": "disable", "code": "000000"})
    assert refused.status_code == 400 and twofactor.enabled(member.user)
    device = TOTPDevice.objects.get(user=member.user, confirmed=True)
    client.post(reverse("two_factor"), {"action": "disable", "code": code_for(device)})
    assert not twofactor.enabled(member.user)


def test_an_organization_can_require_it_of_its_members(owner, member):
    org = owner.organization
    owner_client = client_for(owner)
    # An owner without it in their own session cannot require it (no lock-out by mistake).
    owner_client.post(reverse("org_two_factor", args=[org.slug]), {"require_two_factor": "on"})
    org.refresh_from_db()
    assert not org.require_two_factor
    setup(owner_client, owner.user)  # sets it up and counts as signed in with it
    owner_client.post(reverse("org_two_factor", args=[org.slug]), {"require_two_factor": "on"})
    org.refresh_from_db()
    assert org.require_two_factor
    assert AuditEvent.objects.for_org(org).get(action="organization.two_factor").details == {
        "required": True
    }
    assert owner_client.get(reverse("org_home", args=[org.slug])).status_code == 200

    # A member without it is sent to set it up, and then gets in.
    member_client = client_for(member)
    response = member_client.get(reverse("agent_list", args=[org.slug]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("two_factor") + "?next=")
    page = member_client.get(response["Location"])
    assert b"Acme requires two-factor sign-in" in page.content
    setup(member_client, member.user)
    assert member_client.get(reverse("agent_list", args=[org.slug])).status_code == 200
    # Another organization of the member's is not affected; a foreign one is still a 404.
    mine = MembershipFactory(user=member.user, organization__slug="side")
    assert (
        client_for(member).get(reverse("org_home", args=[mine.organization.slug])).status_code
        == 200
    )
    # A session signed in without the code is asked for it.
    assert (
        client_for(member)
        .get(reverse("org_home", args=[org.slug]))["Location"]
        .startswith(reverse("login_otp"))
    )
    # And while it is required, a member cannot turn their own off.
    device = TOTPDevice.objects.get(user=member.user, confirmed=True)
    refused = member_client.post(
        reverse("two_factor"), {"action": "disable", "code": code_for(device)}
    )
    assert b"Acme requires two-factor sign-in" in refused.content and twofactor.enabled(member.user)


def test_a_foreign_organization_requiring_it_still_answers_404(other_org, member):
    other_org.require_two_factor = True
    other_org.save()
    response = client_for(member).get(reverse("org_home", args=[other_org.slug]))
    assert response.status_code == 404


def test_staff_turn_it_off_for_someone_who_lost_everything(member):
    from portal.models import User

    setup(client_for(member), member.user)
    staff = User.objects.create_superuser(email="ops@example.com", password="staff-password-1")
    response = client_for(staff).post(
        reverse("admin:portal_user_changelist"),
        {"action": "two_factor_turn_off", "_selected_action": [member.user.pk]},
    )
    assert response.status_code == 302
    assert not twofactor.enabled(member.user)
    event = AuditEvent.objects.for_org(member.organization).get(action="staff.changed")
    assert event.actor_kind == "staff" and event.details == {"two_factor": "turned off by staff"}
