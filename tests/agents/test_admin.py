"""Staff admin for agents: list filters and search, status history inline, the two actions."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import Agent, AgentStatus, StatusSource
from portal.models import User
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    user = User.objects.create_superuser(email="ops@example.com", password="staff-password-1")
    client = Client()
    client.force_login(user, backend="portal.backends.EmailBackend")
    return client


def test_list_filters_search_and_history_inline(staff, org):
    agent = AgentFactory(organization=org, name="Searchable", code="A12QWE3456")
    AgentFactory(organization=org, name="Other", status="failed")
    page = staff.get("/admin/agents/agent/", {"q": "A12QWE3456"}).content.decode()
    assert "Searchable" in page and "Other" not in page
    page = staff.get("/admin/agents/agent/", {"status": "failed"}).content.decode()
    assert "Other" in page and "Searchable" not in page
    agent.status_changes.create(to_status="ready", source=StatusSource.POLL)
    change = staff.get(f"/admin/agents/agent/{agent.pk}/change/").content.decode()
    assert "Agent status changes" in change and "Prompt revisions" in change


def test_mark_failed_and_refresh_now_actions(staff, org, django_capture_on_commit_callbacks):
    flying = AgentFactory(organization=org, status="generating", progress=0.3)
    done = AgentFactory(organization=org, status="ready")
    staff.post(
        "/admin/agents/agent/",
        {"action": "mark_failed", "_selected_action": [flying.pk, done.pk]},
    )
    flying.refresh_from_db()
    done.refresh_from_db()
    assert flying.status == AgentStatus.FAILED and "staff" in flying.error_message
    assert done.status == AgentStatus.READY  # terminal agents absorb
    assert flying.status_changes.filter(source=StatusSource.MANUAL).count() == 1

    waiting = AgentFactory(
        organization=org,
        status="generating",
        next_poll_at=timezone.now() + timedelta(minutes=5),
    )
    with django_capture_on_commit_callbacks() as queued:
        staff.post(
            "/admin/agents/agent/",
            {"action": "refresh_status_now", "_selected_action": [waiting.pk]},
        )
    waiting.refresh_from_db()
    assert waiting.next_poll_at <= timezone.now()
    assert len(queued) == 1  # one immediate poll queued
    assert Agent.objects.get(pk=done.pk).status == AgentStatus.READY
