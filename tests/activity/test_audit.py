"""The audit log: one entry per action with the right actor (pages, API, tasks, admin), the
admin page with filters and CSV, the API, and entries that nobody can change."""

from __future__ import annotations

import csv
import io
from collections import Counter

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from activity import services
from activity.models import AppendOnlyError, AuditEvent
from agents import tasks as agent_tasks
from agents.models import Agent
from portal.models import ApiKey, Membership
from portal.tenancy import Role
from sandbox import services as sandbox_services
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.factories import AgentFactory, MembershipFactory, UserFactory
from tests.sessions.conftest import org_sandbox_account


def _actions(org) -> Counter:
    return Counter(AuditEvent.objects.for_org(org).values_list("action", flat=True))


@pytest.mark.django_db(transaction=True)
def test_api_journey_records_each_action_once_as_the_key(sandbox_api, org, receiver):
    admin = MembershipFactory(organization=org, role=Role.ADMIN)
    services.webhook_endpoint_create(actor=admin, url=receiver.url, events=services.EVENT_TYPES)
    key = make_key(org)
    api = ApiClient(key)
    agent_id = api.post("/agents", {"name": "Desk", "prompt": "A hotel front desk"}).json()["id"]
    sandbox_services.sandbox_clock_advance(account=org_sandbox_account(org), seconds=100_000)
    Agent.objects.update(next_poll_at=timezone.now())
    agent_tasks.agents_poll_tick.delay()
    assert api.get(f"/agents/{agent_id}").json()["status"] == "ready"
    session = api.post(f"/agents/{agent_id}/sessions", {"kind": "hosted"}).json()
    api.post(f"/sessions/{session['id']}/speak", {"message": "Anyone there?"})
    api.post(f"/sessions/{session['id']}/end")

    assert _actions(org) == Counter(
        {
            "webhook.created": 1,
            "agent.created": 1,
            "agent.ready": 1,
            "session.started": 1,
            "session.speak": 1,
            "session.ended": 1,
        }
    )
    events = AuditEvent.objects.for_org(org)
    api_key = ApiKey.objects.get(prefix=key[:12])
    for action in ("agent.created", "session.started", "session.speak", "session.ended"):
        event = events.get(action=action)
        assert event.actor_kind == "api_key" and event.actor_api_key == api_key
        assert event.ip_address is None  # keys are not people
    assert events.get(action="agent.ready").actor_kind == "system"
    speak = events.get(action="session.speak")
    assert speak.details["text"] == "Anyone there?" and speak.details["outcome"] == "no_live_room"

    types = [r["headers"]["Portal-Event"] for r in receiver.requests]
    assert Counter(types) == Counter(
        ["agent.ready", "session.started", "session.message", "session.ended"]
    )
    assert all("join_url" not in r["body"].decode() for r in receiver.requests)


@pytest.mark.django_db
def test_page_actions_record_one_entry_each_with_the_person_and_address(org, owner, settings):
    client = client_for(owner)
    slug = org.slug
    client.post(f"/o/{slug}/members/invite/", {"email": "new@example.com", "role": "member"})
    other = MembershipFactory(organization=org, role=Role.MEMBER)
    client.post(f"/o/{slug}/members/{other.public_id}/role/", {"role": "viewer"})
    client.post(f"/o/{slug}/members/{other.public_id}/remove/", {"confirmed": "yes"})
    client.post(f"/o/{slug}/settings/api-keys/", {"name": "CI", "scopes": ["agents:read"]})
    api_key = ApiKey.objects.for_org(org).get(name="CI")
    client.post(f"/o/{slug}/settings/api-keys/{api_key.public_id}/revoke/", {"confirmed": "yes"})
    client.post(
        f"/o/{slug}/settings/api-keys/{api_key.public_id}/revoke/", {"confirmed": "yes"}
    )  # no-op: no entry
    client.post(f"/o/{slug}/settings/connection/test/")

    assert _actions(org) == Counter(
        {
            "member.invited": 1,
            "member.role_changed": 1,
            "member.removed": 1,
            "api_key.created": 1,
            "api_key.revoked": 1,
            "connection.changed": 1,
        }
    )
    for event in AuditEvent.objects.for_org(org):
        assert event.actor_kind == "user" and event.actor_user == owner.user
        assert event.ip_address == "127.0.0.1"
    role = AuditEvent.objects.get(action="member.role_changed")
    assert role.details == {"from": "member", "to": "viewer"}
    assert "secret" not in str(AuditEvent.objects.get(action="connection.changed").details)


@pytest.mark.django_db
def test_invitation_accept_records_the_joining_person(org, owner):
    from organizations import invitations

    issued = invitations.invitation_create(
        actor=owner, email="joiner@example.com", role="member", base_url="http://x"
    )
    user = UserFactory(email="joiner@example.com")
    client_for(user).post(f"/invitations/{issued.token}/")
    joined = AuditEvent.objects.get(action="member.joined")
    assert joined.actor_user == user and joined.organization == org


@pytest.mark.django_db
def test_staff_actions_in_admin_are_recorded_for_the_organization(org, other_org):
    staff = UserFactory(is_staff=True, is_superuser=True)
    agent = AgentFactory(organization=org, name="Old")
    client = client_for(staff)
    page = client.get(f"/admin/agents/agent/{agent.pk}/change/")
    assert page.status_code == 200
    client.post(
        "/admin/agents/agent/",
        {"action": "delete_selected", "_selected_action": [agent.pk], "post": "yes"},
    )
    entries = AuditEvent.objects.for_org(org).filter(actor_kind="staff")
    assert not Agent.objects.filter(pk=agent.pk).exists()
    (entry,) = entries
    assert entry.actor_user == staff and entry.action == "staff.deleted"
    assert entry.target_id == str(agent.public_id) and entry.target_label == "Old"
    assert not AuditEvent.objects.for_org(other_org).exists()


@pytest.mark.django_db
def test_entries_cannot_be_changed_or_deleted_anywhere(org, owner):
    event = services.audit_record(org=org, actor=owner, action="agent.created")
    with pytest.raises(AppendOnlyError):
        event.details = {"x": 1}
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action="agent.deleted")
    # The admin is read-only, even for superusers.
    staff = client_for(UserFactory(is_staff=True, is_superuser=True))
    assert staff.get(f"/admin/activity/auditevent/{event.pk}/change/").status_code == 200
    staff.post(f"/admin/activity/auditevent/{event.pk}/change/", {"action": "agent.deleted"})
    assert (
        staff.post(f"/admin/activity/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert staff.get("/admin/activity/auditevent/add/").status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).action == "agent.created"
    assert Permission.objects.filter(codename="delete_auditevent").exists()  # but never granted
    # The API only lists.
    api = ApiClient(make_key(org, scopes=["audit:read"]))
    path = f"/audit-events/{event.public_id}"
    assert api.delete(path).status_code in (404, 405)
    assert api.patch(path, {"action": "x"}).status_code in (404, 405)
    assert AuditEvent.objects.count() == 1
    # Deleting a user keeps the entry and who it was.
    owner.user.delete()
    assert AuditEvent.objects.get(pk=event.pk).actor_label


@pytest.mark.django_db
def test_audit_page_filters_pages_and_exports_csv(org, owner, member):
    for n in range(60):
        services.audit_record(org=org, actor=owner, action="agent.created", details={"n": n})
    services.audit_record(
        org=org, actor=member, action="agent.deleted", details={"note": "=HYPERLINK()"}
    )
    admin_client = client_for(owner)
    page = admin_client.get(f"/o/{org.slug}/activity/")
    assert page.status_code == 200 and "Page 1 of 2" in page.content.decode()
    filtered = admin_client.get(f"/o/{org.slug}/activity/", {"action": "agent.deleted"})
    assert (
        "61 entries" not in filtered.content.decode() and "(1 entries)" in filtered.content.decode()
    )
    by_actor = admin_client.get(f"/o/{org.slug}/activity/", {"actor": member.user.email})
    assert "(1 entries)" in by_actor.content.decode()
    assert client_for(member).get(f"/o/{org.slug}/activity/").status_code == 403

    export = admin_client.get(f"/o/{org.slug}/activity/export.csv", {"action": "agent.deleted"})
    assert export["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows[0][:4] == ["time", "actor_kind", "actor", "action"]
    assert len(rows) == 2 and rows[1][3] == "agent.deleted"
    assert not rows[1][9].startswith("=")


@pytest.mark.django_db
def test_audit_api_needs_its_scope_filters_and_pages(org, other_org, owner):
    services.audit_record(org=org, actor=owner, action="agent.created")
    services.audit_record(org=org, actor=None, action="agent.ready")
    services.audit_record(org=other_org, actor=None, action="agent.ready")
    assert ApiClient(make_key(org, scopes=["agents:read"])).get("/audit-events").status_code == 403
    api = ApiClient(make_key(org, scopes=["audit:read"]))
    everything = api.get("/audit-events").json()
    assert everything["count"] == 2 and len(everything["items"]) == 2
    ready = api.get("/audit-events", action="agent.ready").json()
    assert [e["actor_kind"] for e in ready["items"]] == ["system"]
    paged = api.get("/audit-events", limit=1, offset=1).json()
    assert paged["count"] == 2 and len(paged["items"]) == 1
    assert api.get("/audit-events", limit=0).status_code == 422


def test_actor_of_a_membership_without_user_and_a_plain_user():
    assert services._actor_fields(None)["actor_kind"] == "system"
    assert services._actor_fields(Membership(role=Role.MEMBER))["actor_kind"] == "system"
