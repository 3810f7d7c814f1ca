"""A member who leaves or loses a role takes the invitations they sent above their remaining
role with them; the API keys they created are shown to the remover, revoked with one click or
kept, and the audit log says which."""

import pytest
from django.urls import reverse

from activity.models import AuditEvent
from organizations import invitations, services
from portal.models import ApiKey, Invitation
from portal.tenancy import Role
from tests.conftest import client_for
from tests.factories import ApiKeyFactory, InvitationFactory, MembershipFactory

pytestmark = pytest.mark.django_db


def _remove_url(m):
    return reverse("member_remove", args=[m.organization.slug, m.public_id])


def _pending(inv) -> bool:
    inv.refresh_from_db()
    return inv.revoked_at is None


def test_a_removed_admins_invitations_are_revoked_so_they_cannot_come_back(org, owner):
    admin = MembershipFactory(organization=org, role=Role.ADMIN)
    own_second = InvitationFactory(
        organization=org, invited_by=admin.user, role=Role.ADMIN, token="second-address-token"
    )
    other = InvitationFactory(organization=org, invited_by=owner.user, role=Role.ADMIN)
    client_for(owner).post(_remove_url(admin), {"confirmed": "yes"})
    assert not _pending(own_second) and _pending(other)
    problem = invitations.invitation_problem(invitation=own_second)
    assert problem  # the link no longer works
    event = AuditEvent.objects.get(action="member.removed")
    assert event.details["invitations_revoked"] == [own_second.email]


def test_leaving_revokes_all_ones_own_pending_invitations(org, owner):
    member = MembershipFactory(organization=org, role=Role.ADMIN)
    sent = [
        InvitationFactory(organization=org, invited_by=member.user, role=role)
        for role in (Role.VIEWER, Role.MEMBER, Role.ADMIN)
    ]
    services.membership_remove(actor=member, target=member)
    assert not any(_pending(inv) for inv in sent)


def test_lowering_a_role_revokes_the_invitations_above_the_role_kept(org, owner):
    admin = MembershipFactory(organization=org, role=Role.ADMIN)
    as_admin = InvitationFactory(organization=org, invited_by=admin.user, role=Role.ADMIN)
    as_member = InvitationFactory(organization=org, invited_by=admin.user, role=Role.MEMBER)
    as_viewer = InvitationFactory(organization=org, invited_by=admin.user, role=Role.VIEWER)
    response = client_for(owner).post(
        reverse("member_role", args=[org.slug, admin.public_id]), {"role": Role.MEMBER}
    )
    assert response.status_code == 302
    assert not _pending(as_admin) and _pending(as_member) and _pending(as_viewer)
    services.membership_role_change(actor=owner, target=admin, role=Role.VIEWER)
    assert not _pending(as_member) and _pending(as_viewer)
    changes = AuditEvent.objects.filter(action="member.role_changed").order_by("pk")
    assert [e.details.get("invitations_revoked") for e in changes] == [
        [as_admin.email],
        [as_member.email],
    ]


def test_the_remover_sees_the_members_api_keys_and_revokes_them_in_one_click(org, owner):
    admin = MembershipFactory(organization=org, role=Role.ADMIN)
    theirs = ApiKeyFactory(organization=org, created_by=admin.user, name="CI deploys")
    mine = ApiKeyFactory(organization=org, created_by=owner.user, name="Mine")
    client = client_for(owner)
    confirm = client.get(_remove_url(admin))
    page = confirm.content.decode()
    assert confirm.status_code == 200
    assert "CI deploys" in page and theirs.display in page and "Mine" not in page
    assert 'value="revoke"' in page and 'value="keep"' in page
    assert ApiKey.objects.get(pk=theirs.pk).revoked_at is None  # GET changes nothing
    done = client.post(_remove_url(admin), {"api_keys": "revoke", "confirmed": "yes"}, follow=True)
    assert "were revoked" in done.content.decode()
    assert ApiKey.objects.get(pk=theirs.pk).revoked_at is not None
    assert ApiKey.objects.get(pk=mine.pk).revoked_at is None
    event = AuditEvent.objects.get(action="member.removed")
    assert event.details["api_keys_action"] == "revoked"
    assert event.details["api_keys"] == [f"CI deploys ({theirs.display})"]
    assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1


def test_the_remover_may_keep_the_keys_and_that_choice_is_audited(org, owner):
    admin = MembershipFactory(organization=org, role=Role.ADMIN)
    theirs = ApiKeyFactory(organization=org, created_by=admin.user)
    done = client_for(owner).post(
        _remove_url(admin), {"api_keys": "keep", "confirmed": "yes"}, follow=True
    )
    assert "still work" in done.content.decode()
    assert ApiKey.objects.get(pk=theirs.pk).revoked_at is None
    event = AuditEvent.objects.get(action="member.removed")
    assert event.details["api_keys_action"] == "kept"


def test_the_confirm_page_is_for_admins_and_only_for_members_they_may_remove(
    org, owner, admin, member
):
    assert client_for(member).get(_remove_url(admin)).status_code == 403
    to_members = client_for(admin).get(_remove_url(owner))  # ranked above: back to the list
    assert to_members.status_code == 302
    assert client_for(admin).get(_remove_url(member)).status_code == 200
    assert Invitation.objects.count() == 0
