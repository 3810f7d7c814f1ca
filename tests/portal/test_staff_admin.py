"""The staff admin without traps: branded; organizations told apart by slug; one "Generating";
generated and bitHuman-owned fields read-only; actions that say why they did nothing; "End
session" and "Suspend organization" (members still read; no generating, sessions or API; a
banner with the reason; audited)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from activity.models import AuditEvent
from agents import services as agent_services
from agents.models import Agent
from agents.preflight import MediaSource
from portal.errors import ApplicationError
from portal.models import Organization, User
from portal.tenancy import Role
from sessions import services as session_services
from sessions.models import AgentSession
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.factories import (
    AgentFactory,
    AgentSessionFactory,
    MembershipFactory,
    OrganizationFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_user():
    return User.objects.create_superuser(email="ops@example.com", password="staff-password-1")


@pytest.fixture
def staff(staff_user):
    client = Client()
    client.force_login(staff_user, backend="portal.backends.EmailBackend")
    return client


def test_the_admin_is_branded(staff):
    page = staff.get("/admin/").content.decode()
    assert "bitHuman Portal · staff admin" in page and "<title>" in page
    assert "bitHuman Portal staff admin" in page
    assert "Django administration" not in page


def test_organizations_with_one_name_are_told_apart_by_slug(staff):
    for slug in ("newcomer", "newcomer-2", "newcomer-3"):
        org = OrganizationFactory(name="Newcomer Co", slug=slug)
        AgentFactory(organization=org, name=f"Agent of {slug}")
    page = staff.get("/admin/agents/agent/").content.decode()
    for slug in ("newcomer", "newcomer-2", "newcomer-3"):
        assert f"Newcomer Co ({slug})" in page
    second = Organization.objects.get(slug="newcomer-2")
    filtered = staff.get("/admin/agents/agent/", {"organization__id__exact": second.pk})
    html = filtered.content.decode()
    assert "Agent of newcomer-2" in html and "Agent of newcomer-3" not in html
    for path in ("/admin/agent_sessions/agentsession/", "/admin/activity/auditevent/"):
        assert "Newcomer Co (newcomer-3)" in staff.get(path).content.decode()


def test_the_status_filter_lists_generating_once_and_finds_all_three(staff, org):
    for status in ("generating", "completed", "success", "ready"):
        AgentFactory(organization=org, name=f"Agent {status}", status=status)
    page = staff.get("/admin/agents/agent/").content.decode()
    links = re.findall(r'<a href="\?status=(\w+)"[^>]*>([^<]+)</a>', page)
    assert [label for _value, label in links].count("Generating") == 1, links
    assert {value for value, _label in links} == {
        "submitting",
        "processing",
        "generating",
        "overdue",
        "ready",
        "failed",
    }
    html = staff.get("/admin/agents/agent/", {"status": "generating"}).content.decode()
    for status in ("generating", "completed", "success"):
        assert f"Agent {status}" in html
    assert "Agent ready" not in html


def test_generated_fields_are_read_only(staff, org, other_org):
    agent = AgentFactory(organization=org, name="Ava", model="expression-1", code="A12QWE3456")
    page = staff.get(f"/admin/agents/agent/{agent.pk}/change/").content.decode()
    assert 'name="organization"' not in page and 'name="model"' not in page
    assert 'name="updated_at' not in page and 'name="system_prompt"' not in page
    assert 'name="name"' in page  # the name is ours
    staff.post(
        f"/admin/agents/agent/{agent.pk}/change/",
        {"name": "Ava 2", "organization": other_org.pk, "model": "essence-2"},
    )
    agent.refresh_from_db()
    assert agent.organization_id == org.pk and agent.model == "expression-1"
    org_page = staff.get(f"/admin/portal/organization/{org.pk}/change/").content.decode()
    assert 'name="slug"' not in org_page and 'name="suspended_at' not in org_page


def test_refresh_on_finished_agents_says_why_nothing_happened(staff, org):
    ready = AgentFactory(organization=org, status="ready")
    response = staff.post(
        "/admin/agents/agent/",
        {"action": "refresh_status_now", "_selected_action": [ready.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "Queued a status refresh for 0 agent(s)." in html
    assert "Skipped 1 already ready or failed" in html


def test_staff_end_session_action_ends_and_audits(staff, org):
    session = AgentSessionFactory(agent=AgentFactory(organization=org))
    ended_already = AgentSessionFactory(agent=AgentFactory(organization=org), status="ended")
    response = staff.post(
        "/admin/agent_sessions/agentsession/",
        {"action": "end_session", "_selected_action": [session.pk, ended_already.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "Ended 1 session(s)." in html and "Skipped 1 already ended." in html
    session.refresh_from_db()
    assert session.status == "ended" and session.end_reason == "staff"
    entry = AuditEvent.objects.get(action="session.ended")
    assert entry.actor_kind == "staff" and entry.organization_id == org.pk


def _suspend(staff, org, reason="Unpaid invoice #42"):
    org.refresh_from_db()
    before = (org.suspended_at, org.suspended_reason)
    first = staff.post(
        "/admin/portal/organization/", {"action": "suspend", "_selected_action": [org.pk]}
    )
    assert first.status_code == 200 and "Suspend organizations" in first.content.decode()
    org.refresh_from_db()
    assert (org.suspended_at, org.suspended_reason) == before  # asking changed nothing
    return staff.post(
        "/admin/portal/organization/",
        {"action": "suspend", "_selected_action": [org.pk], "reason": reason},
        follow=True,
    )


def test_suspension_stops_generating_sessions_and_the_api_but_not_reading(staff, org):
    member = MembershipFactory(organization=org, role=Role.MEMBER)
    agent = AgentFactory(organization=org, name="Ava")
    live = AgentSessionFactory(agent=agent)
    key = make_key(org)
    response = _suspend(staff, org)
    assert "Suspended 1 organization(s)" in response.content.decode()
    org.refresh_from_db()
    assert org.is_suspended and org.suspended_reason == "Unpaid invoice #42"
    assert AgentSession.objects.get(pk=live.pk).status == "ended"
    entry = AuditEvent.objects.get(action="organization.suspended")
    assert entry.actor_kind == "staff" and entry.details == {"reason": "Unpaid invoice #42"}

    # Members sign in and read, with the reason on every page.
    client = client_for(member)
    for path in (
        f"/o/{org.slug}/",
        f"/o/{org.slug}/agents/",
        f"/o/{org.slug}/agents/{agent.public_id}/",
    ):
        page = client.get(path)
        assert page.status_code == 200
        assert (
            "is suspended" in page.content.decode()
            and "Unpaid invoice #42" in page.content.decode()
        )

    # No generating, no sessions: the services refuse (one check).
    member.organization.refresh_from_db()
    with pytest.raises(ApplicationError, match="suspended"):
        agent_services.agent_create(
            actor=member,
            name="New",
            system_prompt="Hi",
            model="expression-1",
            aspect_ratio="16:9",
            framing="portrait",
            transparency=False,
            image=MediaSource(url="https://example.com/a.png"),
            audio=MediaSource(url="https://example.com/a.wav"),
        )
    with pytest.raises(ApplicationError, match="suspended"):
        session_services.session_start(actor=member, agent=agent, kind="hosted")
    assert Agent.objects.count() == 1 and AgentSession.objects.count() == 1

    # The API answers its envelope with a clear code.
    api = ApiClient(key)
    for response in (api.get("/agents"), api.get("/organization")):
        assert response.status_code == 403
        error = response.json()["error"]
        assert (
            error["code"] == "organization_suspended" and "Unpaid invoice #42" in error["message"]
        )

    # Lifted: everything works again, and that is audited too.
    staff.post("/admin/portal/organization/", {"action": "unsuspend", "_selected_action": [org.pk]})
    org.refresh_from_db()
    assert not org.is_suspended
    assert api.get("/organization").status_code == 200
    assert AuditEvent.objects.filter(action="organization.unsuspended").count() == 1
    assert "is suspended" not in client.get(f"/o/{org.slug}/").content.decode()


def test_suspending_twice_says_nothing_was_done(staff, org):
    _suspend(staff, org)
    again = _suspend(staff, org, reason="Another").content.decode()
    assert "1 already suspended: nothing to do." in again
    org.refresh_from_db()
    assert org.suspended_reason == "Unpaid invoice #42"
    assert AuditEvent.objects.filter(action="organization.suspended").count() == 1


def test_other_organizations_are_untouched(staff, org, other_org):
    key = make_key(other_org)
    _suspend(staff, org)
    assert ApiClient(key).get("/organization").status_code == 200
