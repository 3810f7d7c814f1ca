"""Invitations: the email link, sign-up or log-in on acceptance, and every edge."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from organizations import invitations, services
from portal.models import Invitation, Membership, User, token_hash
from portal.tenancy import Role
from tests.conftest import client_for
from tests.factories import PASSWORD, InvitationFactory, UserFactory

pytestmark = pytest.mark.django_db


def _invite(admin, email="new@example.com", role=Role.MEMBER) -> str:
    client_for(admin).post(
        reverse("member_invite", args=[admin.organization.slug]), {"email": email, "role": role}
    )
    body = mail.outbox[-1].body
    return re.search(r"http://testserver(/invitations/\S+/)", body).group(1)


def test_invite_emails_a_link_and_stores_only_the_token_hash(admin):
    path = _invite(admin, "New@Example.com", Role.VIEWER)
    token = path.split("/")[2]
    invitation = Invitation.objects.get()
    assert invitation.email == "new@example.com"
    assert mail.outbox[-1].to == ["new@example.com"]
    assert invitation.token_hash == token_hash(token)
    assert token not in invitation.token_hash
    assert invitation.expires_at - timezone.now() > timedelta(days=6, hours=23)


def test_new_person_accepts_by_signing_up_and_joins_with_the_role(admin):
    path = _invite(admin, role=Role.VIEWER)
    client = Client()
    page = client.get(path)
    assert b"Choose a password" in page.content
    response = client.post(path, {"full_name": "Neo", "password": "follow-the-rabbit-99"})
    assert response.status_code == 302
    user = User.objects.get(email="new@example.com")
    assert Membership.objects.get(user=user, organization=admin.organization).role == Role.VIEWER
    assert client.get(response["Location"]).status_code == 200  # logged in


def test_bad_password_on_signup_acceptance_keeps_the_invitation_usable(admin):
    path = _invite(admin)
    response = Client().post(path, {"password": "1"})
    assert "password" in response.context["form"].errors
    assert not User.objects.filter(email="new@example.com").exists()
    assert Invitation.objects.get().accepted_at is None


def test_existing_user_logs_in_then_accepts(admin):
    user = UserFactory(email="known@example.com")
    path = _invite(admin, "known@example.com")
    client = Client()
    page = client.get(path)
    assert b"Log in as known@example.com" in page.content
    response = client.post(
        reverse("login") + f"?next={path}",
        {"username": "known@example.com", "password": PASSWORD, "next": path},
    )
    assert response["Location"] == path
    client.post(path)
    assert Membership.objects.filter(user=user, organization=admin.organization).exists()


def test_wrong_email_cannot_accept(admin, other_owner):
    path = _invite(admin, "someone@example.com")
    response = client_for(other_owner).post(path)
    assert response.status_code == 403
    assert b"was sent to someone@example.com" in response.content
    assert Invitation.objects.get().accepted_at is None
    assert not Membership.objects.filter(
        user=other_owner.user, organization=admin.organization
    ).exists()


def test_expired_link_shows_a_clear_page(org):
    InvitationFactory(
        organization=org, token="expired-token", expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = Client().get(reverse("invitation_accept", args=["expired-token"]))
    assert response.status_code == 410
    assert b"This invitation has expired" in response.content


def test_revoked_link_shows_a_clear_page(admin):
    path = _invite(admin)
    invitation = Invitation.objects.get()
    client_for(admin).post(
        reverse("invitation_revoke", args=[admin.organization.slug, invitation.public_id]),
        {"confirmed": "yes"},
    )
    response = Client().get(path)
    assert response.status_code == 410
    assert b"revoked" in response.content


def test_reused_link_shows_a_clear_page(admin):
    path = _invite(admin)
    Client().post(path, {"password": "follow-the-rabbit-99"})
    response = Client().get(path)
    assert response.status_code == 410
    assert b"already been used" in response.content


def test_unknown_link_is_404():
    response = Client().get(reverse("invitation_accept", args=["nonsense"]))
    assert response.status_code == 404
    assert b"not valid" in response.content


def test_accepting_twice_concurrently_only_succeeds_once(org):
    invitation = InvitationFactory(organization=org, email="twice@example.com")
    user = UserFactory(email="twice@example.com")
    invitations.invitation_accept(invitation=invitation, user=user)
    stale = Invitation.objects.get(pk=invitation.pk)
    stale.accepted_at = None  # as seen by a second request that read it before the first wrote
    with pytest.raises(services.ApplicationError):
        invitations.invitation_accept(invitation=stale, user=user)


def test_resend_issues_a_new_link_and_kills_the_old_one(admin):
    old_path = _invite(admin)
    invitation = Invitation.objects.get()
    client_for(admin).post(
        reverse("invitation_resend", args=[admin.organization.slug, invitation.public_id])
    )
    new_path = re.search(r"http://testserver(/invitations/\S+/)", mail.outbox[-1].body).group(1)
    assert new_path != old_path
    assert Client().get(old_path).status_code == 404
    assert Client().get(new_path).status_code == 200


def test_duplicate_pending_invitation_and_existing_member_are_field_errors(admin, member):
    _invite(admin, "dup@example.com")
    client = client_for(admin)
    url = reverse("member_invite", args=[admin.organization.slug])
    response = client.post(url, {"email": "DUP@example.com", "role": Role.MEMBER})
    assert "pending invitation" in str(response.context["invite_form"].errors["email"])
    response = client.post(url, {"email": member.user.email, "role": Role.MEMBER})
    assert "already a member" in str(response.context["invite_form"].errors["email"])
    assert Invitation.objects.count() == 1


def test_housekeeping_deletes_only_long_expired_unaccepted_invitations(org):
    from organizations import tasks

    now = timezone.now()
    old = InvitationFactory(organization=org, expires_at=now - timedelta(days=31))
    recent = InvitationFactory(organization=org, expires_at=now - timedelta(days=1))
    accepted = InvitationFactory(
        organization=org, expires_at=now - timedelta(days=60), accepted_at=now - timedelta(days=61)
    )
    assert tasks.invitations_expire.delay().get() == 1
    remaining = set(Invitation.objects.values_list("pk", flat=True))
    assert remaining == {recent.pk, accepted.pk}
    assert old.pk not in remaining


def test_an_organization_name_saved_with_a_line_break_still_sends_invitations(admin):
    """Forms now refuse line breaks in names; a name stored before that must not make every
    invitation fail (email subjects are one line)."""
    admin.organization.name = "Acme\nLabs"
    admin.organization.save()
    _invite(admin)
    assert mail.outbox[-1].subject == "You are invited to Acme Labs on bitHuman Portal"
