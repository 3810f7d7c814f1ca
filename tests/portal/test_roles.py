"""Every role rule, exercised through the pages (the view -> service path a user takes)."""

import pytest
from django.test import Client
from django.urls import reverse

from portal.models import Invitation, Membership, Organization
from portal.tenancy import Role, role_at_least, roles_grantable_by
from tests.conftest import client_for
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def _role_url(m: Membership) -> str:
    return reverse("member_role", args=[m.organization.slug, m.public_id])


def _remove_url(m: Membership) -> str:
    return reverse("member_remove", args=[m.organization.slug, m.public_id])


def _invite(actor: Membership, email: str, role: str):
    return client_for(actor).post(
        reverse("member_invite", args=[actor.organization.slug]), {"email": email, "role": role}
    )


def test_role_hierarchy_and_grantable_roles():
    assert role_at_least(Role.OWNER, Role.ADMIN)
    assert not role_at_least(Role.VIEWER, Role.MEMBER)
    assert roles_grantable_by(Role.ADMIN) == [Role.ADMIN, Role.MEMBER, Role.VIEWER]
    assert roles_grantable_by(Role.VIEWER) == [Role.VIEWER]


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER])
def test_everyone_in_the_org_can_read_its_pages(org, role):
    m = MembershipFactory(organization=org, role=role)
    client = client_for(m)
    for name in ["org_home", "members", "agent_list", "session_list"]:
        assert client.get(reverse(name, args=[org.slug])).status_code == 200, name


@pytest.mark.parametrize("role,status", [(Role.VIEWER, 403), (Role.MEMBER, 403), (Role.ADMIN, 200)])
def test_settings_page_needs_admin(org, role, status):
    m = MembershipFactory(organization=org, role=role)
    assert client_for(m).get(reverse("org_settings", args=[org.slug])).status_code == status


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MEMBER])
def test_viewers_and_members_cannot_invite(org, role):
    m = MembershipFactory(organization=org, role=role)
    response = _invite(m, "x@example.com", Role.VIEWER)
    assert response.status_code == 403
    assert not Invitation.objects.exists()


def test_members_page_hides_admin_actions_from_members(member, admin):
    html = client_for(member).get(reverse("members", args=[member.organization.slug])).content
    assert b"Invite" not in html and b"Change role" not in html
    html = client_for(admin).get(reverse("members", args=[admin.organization.slug])).content
    assert b"Invite" in html and b"Change role" in html


def test_admin_invites_up_to_admin_but_not_owner(admin):
    assert _invite(admin, "a@example.com", Role.ADMIN).status_code == 302
    response = _invite(admin, "o@example.com", Role.OWNER)
    assert response.status_code == 400
    assert "role" in response.context["invite_form"].errors
    assert list(Invitation.objects.values_list("email", flat=True)) == ["a@example.com"]


def test_admin_changes_member_roles_but_cannot_grant_owner(admin, member):
    client = client_for(admin)
    client.post(_role_url(member), {"role": Role.ADMIN})
    member.refresh_from_db()
    assert member.role == Role.ADMIN
    client.post(_role_url(member), {"role": Role.OWNER})
    member.refresh_from_db()
    assert member.role == Role.ADMIN


def test_admin_cannot_demote_or_remove_an_owner(admin, owner):
    client = client_for(admin)
    client.post(_role_url(owner), {"role": Role.VIEWER})
    client.post(_remove_url(owner), {"confirmed": "yes"})
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_member_cannot_change_roles(member, viewer):
    response = client_for(member).post(_role_url(viewer), {"role": Role.MEMBER})
    assert response.status_code == 403
    viewer.refresh_from_db()
    assert viewer.role == Role.VIEWER


def test_member_cannot_remove_others_but_can_leave(member, viewer):
    client = client_for(member)
    response = client.post(_remove_url(viewer), {"confirmed": "yes"}, follow=True)
    assert Membership.objects.filter(pk=viewer.pk).exists()
    assert b"Only admins and above can remove members" in response.content
    client.post(_remove_url(member), {"confirmed": "yes"})
    assert not Membership.objects.filter(pk=member.pk).exists()


def test_owner_makes_another_owner_and_then_can_step_down(owner, admin):
    client = client_for(owner)
    client.post(_role_url(admin), {"role": Role.OWNER})
    admin.refresh_from_db()
    assert admin.role == Role.OWNER
    client.post(_role_url(owner), {"role": Role.MEMBER})
    owner.refresh_from_db()
    assert owner.role == Role.MEMBER


def test_last_owner_cannot_be_demoted_or_leave(owner):
    client = client_for(owner)
    response = client.post(_role_url(owner), {"role": Role.ADMIN}, follow=True)
    assert b"The last owner cannot be demoted" in response.content
    response = client.post(_remove_url(owner), {"confirmed": "yes"}, follow=True)
    assert b"The last owner cannot leave" in response.content
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_only_owner_renames_the_organization(org, owner, admin):
    response = client_for(admin).post(reverse("org_settings", args=[org.slug]), {"name": "Hacked"})
    assert response.status_code == 403
    client_for(owner).post(reverse("org_settings", args=[org.slug]), {"name": "Acme Renamed"})
    org.refresh_from_db()
    assert org.name == "Acme Renamed"


def test_rename_with_blank_name_is_a_field_error(org, owner):
    response = client_for(owner).post(reverse("org_settings", args=[org.slug]), {"name": "  "})
    assert response.status_code == 400
    assert "name" in response.context["form"].errors
    org.refresh_from_db()
    assert org.name == "Acme"


def test_only_owner_deletes_the_organization_with_confirmation(org, owner, admin):
    url = reverse("org_delete", args=[org.slug])
    assert client_for(admin).post(url, {"confirm": org.slug}).status_code == 403
    response = client_for(owner).post(url, {"confirm": "wrong"})
    assert response.status_code == 400
    assert Organization.objects.filter(pk=org.pk).exists()
    client_for(owner).post(url, {"confirm": org.slug})
    assert not Organization.objects.filter(pk=org.pk).exists()


def test_a_user_in_two_orgs_switches_between_them(owner, other_org):
    MembershipFactory(organization=other_org, user=owner.user, role=Role.VIEWER)
    client = client_for(owner)
    page = client.get(reverse("org_home", args=[owner.organization.slug])).content.decode()
    assert f'href="/o/{other_org.slug}/"' in page  # the switcher lists both
    client.get(reverse("org_home", args=[other_org.slug]))
    assert client.get("/")["Location"] == f"/o/{other_org.slug}/"  # remembers the last one


def test_anonymous_user_is_sent_to_login(org):
    response = Client().get(reverse("members", args=[org.slug]))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
