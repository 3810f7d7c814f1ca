"""The audit log for people: human names of targets, readable details, links to objects that
still exist (or "deleted"), and JSON details in the CSV."""

from __future__ import annotations

import csv
import io
import json

import pytest

from activity import services
from activity.models import AuditEvent, WebhookEndpoint
from portal.tenancy import Role
from tests.conftest import client_for
from tests.factories import AgentFactory, AgentSessionFactory, MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(org):
    return MembershipFactory(organization=org, role=Role.OWNER)


def test_targets_have_human_names_links_and_deleted_marks(org, owner):
    agent = AgentFactory(organization=org, name="Ava")
    gone = AgentFactory(organization=org, name="Bob")
    session = AgentSessionFactory(organization=org, agent=agent)
    endpoint = WebhookEndpoint.objects.create(
        organization=org, url="https://hooks.example.com/x", events=["agent.ready"], secret="s"
    )
    services.audit_record(org=org, actor=owner, action="agent.created", target=agent)
    services.audit_record(org=org, actor=owner, action="agent.deleted", target=gone)
    services.audit_record(org=org, actor=owner, action="session.ended", target=session)
    services.audit_record(
        org=org,
        actor=owner,
        action="webhook.updated",
        target=endpoint,
        details={"events": {"from": ["agent.ready"], "to": ["agent.ready", "agent.failed"]}},
    )
    gone.delete()
    html = client_for(owner).get(f"/o/{org.slug}/activity/").content.decode()
    assert "agentsession:" not in html and "webhookendpoint:" not in html
    assert "agent:" not in html
    assert f'href="/o/{org.slug}/agents/{agent.public_id}/">Ava</a>' in html
    assert f'href="/o/{org.slug}/sessions/{session.public_id}/"' in html
    assert f'href="/o/{org.slug}/activity/webhooks/{endpoint.public_id}/"' in html
    assert ">Session<" in html and ">Webhook endpoint<" in html
    bob = html.split("Bob", 1)[1][:80]
    assert "(deleted)" in bob and f"/agents/{gone.public_id}/" not in html
    assert "agent.ready → agent.ready, agent.failed" in html
    assert "events=" not in html and "{&#x27;from" not in html


def test_details_read_as_labelled_values(org, owner):
    services.audit_record(
        org=org,
        actor=owner,
        action="member.role_changed",
        details={"from": "member", "to": "viewer"},
    )
    services.audit_record(
        org=org,
        actor=owner,
        action="session.speak",
        details={"text": "Hello", "outcome": "no_live_room", "outcome_label": "No live room"},
    )
    html = client_for(owner).get(f"/o/{org.slug}/activity/").content.decode()
    assert "<dt>Change</dt><dd>member → viewer</dd>" in html
    assert "<dt>Outcome</dt><dd>No live room</dd>" in html and "no_live_room" not in html
    services.audit_record(
        org=org, actor=owner, action="session.ended", details={"reason": "operator"}
    )
    html = client_for(owner).get(f"/o/{org.slug}/activity/").content.decode()
    assert "<dt>Reason</dt><dd>Ended by an operator</dd>" in html
    assert "from=" not in html and "text=" not in html


def test_the_csv_details_are_json_and_names_are_human(org, owner):
    agent = AgentFactory(organization=org, name="Ava")
    services.audit_record(
        org=org,
        actor=owner,
        action="agent.created",
        target=agent,
        details={"model": "essence-1", "ok": True, "note": "=1+1"},
    )
    export = client_for(owner).get(f"/o/{org.slug}/activity/export.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    (row,) = rows
    assert json.loads(row["details"]) == {"model": "essence-1", "ok": True, "note": "=1+1"}
    assert row["action_name"] == "Agent generated" and row["target_kind"] == "Agent"
    assert row["target_type"] == "agent" and row["action"] == "agent.created"
    assert AuditEvent.objects.count() == 1
