"""Nobody can make the portal's email say something of theirs: names are one line everywhere
(forms, API, services), invitation emails only ever put people's text after a fixed label on
the same line, and invitations and resends are rate-limited per inviter and per organization."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from agents.models import Agent
from portal.models import ApiKey, Invitation, Organization
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.factories import MembershipFactory
from tests.portal.test_invitations import _invite

pytestmark = pytest.mark.django_db

NOTICE = "Bob\n\nSECURITY NOTICE: your account is locked.\nVerify it at https://evil.example/"
BREAKS = ["a\nb", "a\rb", "a\u2028b", "a\u2029b", "a\x85b", "a\tb"]


@pytest.mark.parametrize("name", BREAKS)
def test_the_account_form_refuses_a_name_with_a_line_break(owner, name):
    response = client_for(owner).post(reverse("account"), {"full_name": name})
    assert response.status_code == 200
    assert b"one line of text" in response.content
    owner.user.refresh_from_db()
    assert owner.user.full_name != name


def test_names_with_line_breaks_are_refused_by_every_form(owner):
    client = client_for(owner)
    slug = owner.organization.slug
    pages = [
        (reverse("organization_create"), {"name": NOTICE}),
        (reverse("org_settings", args=[slug]), {"name": NOTICE}),
        (reverse("api_key_create", args=[slug]), {"name": NOTICE, "scopes": ["agents:read"]}),
    ]
    for path, data in pages:
        response = client.post(path, data)
        assert response.status_code in (200, 400), path
        assert b"one line of text" in response.content, path
    assert not Organization.objects.filter(name__contains="NOTICE").exists()
    assert not ApiKey.objects.filter(name__contains="NOTICE").exists()


def test_the_signup_form_refuses_a_name_with_a_line_break(db):
    response = Client().post(
        reverse("signup"),
        {
            "full_name": NOTICE,
            "email": "new@example.com",
            "password": "a-long-enough-password-1",
            "organization_name": "New Co",
        },
    )
    assert b"one line of text" in response.content
    assert not mail.outbox


def test_the_api_refuses_an_agent_name_with_a_line_break(org):
    api = ApiClient(make_key(org))
    response = api.post("/agents", {"name": "Ava\nSECURITY NOTICE", "prompt": "Hello there"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert not Agent.objects.exists()


def test_services_refuse_line_breaks_whatever_calls_them(owner):
    from organizations import services
    from portal.errors import ApplicationError

    with pytest.raises(ApplicationError, match="one line"):
        services.user_create(email="x@example.com", password=None, full_name=NOTICE)
    with pytest.raises(ApplicationError, match="one line"):
        services.organization_rename(actor=owner, name="Acme\nLabs")


def test_no_line_of_an_invitation_email_starts_with_a_name_someone_wrote(admin):
    # Saved before the rule (or by a script): the email must still be safe.
    admin.user.full_name = NOTICE
    admin.user.save()
    admin.organization.name = "Acme\r\nDear user, click below"
    admin.organization.save()
    _invite(admin)
    message = mail.outbox[-1]
    assert "\n" not in message.subject and "\r" not in message.subject
    fixed = (
        "You are invited to join an organization on bitHuman Portal.",
        "Organization: ",
        "Invited by: ",
        "Role: ",
        "Accept the invitation (the link works once",
        "http://testserver/invitations/",
        "If you did not expect this invitation",
    )
    for line in message.body.splitlines():
        assert not line or line.startswith(fixed), repr(line)
    assert "SECURITY NOTICE" in message.body  # still shown, but inside the "Invited by:" line
    invited_by = next(line for line in message.body.splitlines() if "SECURITY" in line)
    assert invited_by.startswith("Invited by: Bob SECURITY NOTICE")
    assert invited_by.endswith(f"({admin.user.email})")


def test_invitations_and_resends_are_limited_per_inviter_and_per_organization(admin, settings):
    settings.INVITATION_LIMIT_PER_INVITER = 3
    settings.INVITATION_LIMIT_PER_ORGANIZATION = 5
    slug = admin.organization.slug
    client = client_for(admin)
    _invite(admin, "a@example.com")
    _invite(admin, "b@example.com")
    invitation = Invitation.objects.get(email="a@example.com")
    resend = reverse("invitation_resend", args=[slug, invitation.public_id])
    client.post(resend)  # a resend sends an email too: the third of this inviter
    sent = len(mail.outbox)
    refused = client.post(
        reverse("member_invite", args=[slug]), {"email": "c@example.com", "role": "member"}
    )
    assert refused.status_code == 400
    assert b"You have sent too many invitations for now. Try again in" in refused.content
    again = client.post(resend, follow=True)
    assert b"You have sent too many invitations for now" in again.content
    assert len(mail.outbox) == sent
    assert not Invitation.objects.filter(email="c@example.com").exists()

    # Another admin of the organization has their own budget, up to the organization's.
    other = MembershipFactory(organization=admin.organization, role="admin")
    _invite(other, "d@example.com")
    _invite(other, "e@example.com")
    refused = client_for(other).post(
        reverse("member_invite", args=[slug]), {"email": "f@example.com", "role": "member"}
    )
    assert b"This organization has sent too many invitations for now" in refused.content
    assert len(mail.outbox) == sent + 2
