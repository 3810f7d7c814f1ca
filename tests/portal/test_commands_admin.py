"""Operator commands and the staff admin."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from portal.models import Invitation, Membership, Organization, User
from portal.tenancy import Role
from tests.factories import InvitationFactory, UserFactory

pytestmark = pytest.mark.django_db


def _call(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def test_create_organization_creates_owner_and_prints_slug():
    slug = _call(
        "create_organization",
        "--name",
        "Umbrella Corp",
        "--owner-email",
        "Alice@Umbrella.com",
        "--owner-password",
        "raccoon-city-1998",
    )
    org = Organization.objects.get(slug=slug)
    assert slug == "umbrella-corp"
    owner = User.objects.get(email="alice@umbrella.com")
    assert owner.check_password("raccoon-city-1998")
    assert Membership.objects.get(organization=org, user=owner).role == Role.OWNER


def test_create_organization_reuses_existing_user_and_makes_slugs_unique():
    user = UserFactory(email="bob@example.com")
    first = _call("create_organization", "--name", "Same", "--owner-email", "bob@example.com")
    second = _call("create_organization", "--name", "Same", "--owner-email", "BOB@example.com")
    assert first == "same" and second.startswith("same-") and first != second
    assert Membership.objects.filter(user=user, role=Role.OWNER).count() == 2


def test_create_organization_refuses_to_reset_an_existing_password():
    UserFactory(email="carl@example.com")
    with pytest.raises(CommandError):
        _call(
            "create_organization",
            "--name",
            "X",
            "--owner-email",
            "carl@example.com",
            "--owner-password",
            "new-password-123",
        )
    assert not Organization.objects.exists()


def test_demo_setup_prints_credentials_once_and_they_work():
    out = _call("demo_setup")
    password = out.split("Password:")[1].split()[0]
    response = Client().post("/login/", {"username": "demo@example.com", "password": password})
    assert response.status_code == 302
    again = _call("demo_setup")
    assert "Password:" not in again
    assert Organization.objects.filter(membership__user__email="demo@example.com").count() == 1


@pytest.fixture
def staff_client():
    staff = User.objects.create_superuser(email="staff@example.com", password="staff-password-1")
    client = Client()
    client.force_login(staff, backend="portal.backends.EmailBackend")
    return client


def test_admin_lists_and_searches(staff_client, org, owner):
    for url in [
        "/admin/portal/user/",
        "/admin/portal/organization/",
        "/admin/portal/membership/",
        "/admin/portal/invitation/",
    ]:
        assert staff_client.get(url).status_code == 200, url
    response = staff_client.get("/admin/portal/user/", {"q": owner.user.email})
    assert owner.user.email in response.content.decode()


def test_admin_never_shows_invitation_tokens(staff_client, org):
    invitation = InvitationFactory(organization=org)
    html = staff_client.get(f"/admin/portal/invitation/{invitation.pk}/change/").content.decode()
    assert invitation.email in html
    assert invitation.token_hash not in html
    assert Invitation._meta.get_field("token_hash").name not in html


def test_admin_is_staff_only(owner):
    client = Client()
    client.force_login(owner.user, backend="portal.backends.EmailBackend")
    assert client.get("/admin/portal/organization/").status_code == 302
