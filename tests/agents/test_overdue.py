"""Overdue is not failed: "Give up" is the user's choice, after a confirmation that says what it
means for credits; nothing moves an overdue agent backwards, and ready or failed still apply."""

import pytest
from django.urls import reverse

from agents import statuses
from agents.models import Agent, AgentStatus, StatusSource
from portal.bithuman import types as bh
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


def _status(status, progress):
    return bh.AgentStatus.model_validate(
        {"agent_id": "A00OVR0000", "status": status, "progress": progress}
    )


def test_give_up_asks_first_and_says_what_it_means_for_credits(org, member, viewer):
    agent = AgentFactory(organization=org, code="A00OVR0000", status=AgentStatus.OVERDUE)
    page = client_for(member).get(reverse("agent_detail", args=[org.slug, agent.public_id]))
    assert 'id="agent-overdue"' in page.content.decode() and "Give up" in page.content.decode()
    url = reverse("agent_give_up", args=[org.slug, agent.public_id])

    asked = client_for(member).post(url)
    assert asked.status_code == 200 and "credits" in asked.content.decode()
    assert Agent.objects.get(pk=agent.pk).status == AgentStatus.OVERDUE  # nothing changed yet

    assert client_for(viewer).post(url, {"confirmed": "yes"}).status_code == 403
    client_for(member).post(url, {"confirmed": "yes"})
    agent.refresh_from_db()
    assert agent.status == AgentStatus.FAILED and "Given up" in agent.error_message
    # Failed for good: a late answer is absorbed.
    assert not statuses.agent_status_apply(
        agent=agent, status=_status("ready", 1.0), source=StatusSource.POLL
    )


def test_the_api_gives_up_only_on_an_overdue_agent(org):
    api = ApiClient(make_key(org))
    running = AgentFactory(organization=org, code="A00RUN0000", status=AgentStatus.GENERATING)
    refused = api.post(f"/agents/{running.public_id}/give-up")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "agent_not_overdue"
    overdue = AgentFactory(organization=org, code="A00OVR0000", status=AgentStatus.OVERDUE)
    body = api.post(f"/agents/{overdue.public_id}/give-up").json()
    assert body["status"] == "failed"


@pytest.mark.parametrize("ending", ["ready", "failed"])
def test_overdue_keeps_its_status_through_progress_and_takes_an_ending(org, ending):
    agent = AgentFactory(
        organization=org, code="A00OVR0000", status=AgentStatus.OVERDUE, progress=0.5
    )
    assert statuses.agent_status_apply(
        agent=agent, status=_status("generating", 0.7), source=StatusSource.POLL
    )
    agent.refresh_from_db()
    assert (agent.status, agent.progress) == (AgentStatus.OVERDUE, 0.7)
    assert not statuses.agent_status_apply(  # behind: stale, ignored
        agent=agent, status=_status("generating", 0.6), source=StatusSource.POLL
    )
    assert statuses.agent_status_apply(
        agent=agent, status=_status(ending, 1.0), source=StatusSource.WEBHOOK
    )
    agent.refresh_from_db()
    assert agent.status == ending
