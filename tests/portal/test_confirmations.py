"""One confirmation pattern: every destructive or hard-to-undo action posted without
`confirmed=yes` answers a confirmation page and changes nothing; confirmed, it acts."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from activity.models import AuditEvent, WebhookEndpoint
from agents.models import Agent
from portal.models import ApiKey, Invitation, Membership
from portal.tenancy import Role
from sessions.models import AgentSession
from tests.conftest import client_for
from tests.factories import (
    AgentFactory,
    AgentSessionFactory,
    ApiKeyFactory,
    InvitationFactory,
    MembershipFactory,
    PromptRevisionFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(org):
    return MembershipFactory(organization=org, role=Role.OWNER)


def _state():
    return (
        list(Membership.objects.order_by("pk").values_list("pk", "role")),
        list(Invitation.objects.order_by("pk").values_list("pk", "revoked_at")),
        list(ApiKey.objects.order_by("pk").values_list("pk", "revoked_at")),
        list(AgentSession.objects.order_by("pk").values_list("pk", "status")),
        list(Agent.objects.order_by("pk").values_list("pk", "system_prompt")),
        list(WebhookEndpoint.objects.order_by("pk").values_list("pk", "secret")),
        AuditEvent.objects.count(),
    )


def _actions(org):
    """(name, url, expected title, button) of each action that asks first."""
    member = MembershipFactory(organization=org, role=Role.MEMBER)
    invitation = InvitationFactory(organization=org, email="new@example.com")
    key = ApiKeyFactory(organization=org, name="CI key")
    agent = AgentFactory(organization=org, name="Ava", system_prompt="Now")
    revision = PromptRevisionFactory(agent=agent, text="Before")
    session = AgentSessionFactory(agent=agent)
    endpoint = WebhookEndpoint.objects.create(
        organization=org, url="https://hooks.example.com/x", events=["agent.ready"], secret="s"
    )
    slug = org.slug
    return [
        (
            reverse("member_remove", args=[slug, member.public_id]),
            f"Remove {member.user.email}?",
            "Remove member",
        ),
        (
            reverse("invitation_revoke", args=[slug, invitation.public_id]),
            "Revoke the invitation to new@example.com?",
            "Revoke invitation",
        ),
        (
            reverse("api_key_revoke", args=[slug, key.public_id]),
            "Revoke the API key CI key?",
            "Revoke key",
        ),
        (
            reverse("agent_prompt_restore", args=[slug, agent.public_id, revision.pk]),
            "Restore this prompt of Ava?",
            "Restore prompt",
        ),
        (
            reverse("session_end", args=[slug, session.public_id]),
            "End the session with Ava?",
            "End session",
        ),
        (
            reverse("webhook_rotate", args=[slug, endpoint.public_id]),
            "Rotate the signing secret of https://hooks.example.com/x?",
            "Rotate secret",
        ),
        (
            reverse("webhook_delete", args=[slug, endpoint.public_id]),
            "Delete the endpoint https://hooks.example.com/x?",
            "Delete endpoint",
        ),
    ]


def test_every_action_asks_first_and_changes_nothing(org, owner):
    client = client_for(owner)
    for url, title, button in _actions(org):
        before = _state()
        for data in ({}, {"confirmed": "no"}, {"confirmed": ""}):
            response = client.post(url, data)
            html = response.content.decode()
            assert response.status_code == 200, url
            assert f'<h1 id="confirm-title">{title}</h1>'.replace("?", "?") in html.replace(
                "&#x27;", "'"
            ), (url, html[:2000])
            assert re.search(r'<input type="hidden" name="confirmed" value="yes">', html)
            assert f">{button}</button>" in html and ">Cancel</a>" in html
            assert f'action="{url}"' in html
        assert _state() == before, url


def test_the_confirmation_page_carries_the_posted_fields(org, owner):
    invitation = InvitationFactory(organization=org, email="new@example.com")
    url = reverse("invitation_revoke", args=[org.slug, invitation.public_id])
    html = client_for(owner).post(url, {"note": "x<y"}).content.decode()
    assert '<input type="hidden" name="note" value="x&lt;y">' in html


def test_confirmed_actions_act(org, owner):
    member = MembershipFactory(organization=org, role=Role.MEMBER)
    key = ApiKeyFactory(organization=org)
    invitation = InvitationFactory(organization=org, email="new@example.com")
    client = client_for(owner)
    yes = {"confirmed": "yes"}
    assert (
        client.post(reverse("member_remove", args=[org.slug, member.public_id]), yes).status_code
        == 302
    )
    assert not Membership.objects.filter(pk=member.pk).exists()
    client.post(reverse("api_key_revoke", args=[org.slug, key.public_id]), yes)
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    client.post(reverse("invitation_revoke", args=[org.slug, invitation.public_id]), yes)
    assert Invitation.objects.get(pk=invitation.pk).revoked_at is not None


def test_leaving_asks_with_its_own_words(org, owner):
    me = MembershipFactory(organization=org, role=Role.MEMBER)
    html = client_for(me).post(reverse("member_remove", args=[org.slug, me.public_id])).content
    assert b"Leave Acme?" in html and b">Leave organization</button>" in html
    assert Membership.objects.filter(pk=me.pk).exists()


def test_a_foreign_object_is_404_before_any_confirmation(org, other_org, owner):
    foreign = MembershipFactory(organization=other_org, role=Role.MEMBER)
    response = client_for(owner).post(reverse("member_remove", args=[org.slug, foreign.public_id]))
    assert response.status_code == 404


def test_typed_names_guard_deleting_an_agent_and_an_organization(org, owner):
    agent = AgentFactory(organization=org, name="Ava")
    client = client_for(owner)
    wrong = client.post(
        reverse("agent_delete", args=[org.slug, agent.public_id]), {"confirm": "Av"}
    )
    assert wrong.status_code == 400 and "Type Ava to confirm" in wrong.content.decode()
    assert Agent.objects.get(pk=agent.pk).archived_at is None
    page = client.post(reverse("org_delete", args=[org.slug]), {"confirm": "nope"})
    assert page.status_code == 400
    assert Membership.objects.filter(pk=owner.pk).exists()
