"""Errors as bitHuman means them, through the pages and the API against the sandbox: a suspended
account is shown as such on every page of the organization (not as a rejected secret), and
bitHuman's X-Request-Id is kept with every failure and shown beside it."""

import pytest
from django.urls import reverse

from agents import services
from agents.models import Agent, AgentStatus, AgentStatusChange, PromptRevision
from organizations import connections
from sandbox import services as sandbox_services
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _sandbox_account(org, **changes):
    connection = connections.connection_get(org=org)
    account = sandbox_services.sandbox_account_for_secret(secret=connection.sandbox_secret)
    return sandbox_services.sandbox_account_configure(account=account, changes=changes)


def _create(member, name="Bo", *, model="expression-1", prompt="A cheerful host"):
    agent = services.agent_create(
        actor=member,
        name=name,
        system_prompt=prompt,
        model=model,
        aspect_ratio="16:9",
        framing="portrait",
        transparency=False,
        image=services.MediaSource(),
        audio=services.MediaSource(),
    )
    agent.refresh_from_db()
    return agent


def test_a_suspended_account_fails_the_agent_as_such_and_marks_every_page(sandbox_api, org, member):
    _sandbox_account(org, suspended=True)
    agent = _create(member)
    agent.refresh_from_db()

    assert agent.status == AgentStatus.FAILED
    assert "suspended" in agent.error_message
    assert "rejected" not in agent.error_message
    assert agent.error_request_id.startswith("req_")
    change = AgentStatusChange.objects.filter(agent=agent, to_status="failed").get()
    assert change.request_id == agent.error_request_id
    org.refresh_from_db()
    assert org.bithuman_suspended_at is not None

    client = client_for(member)
    for url in (
        reverse("org_home", args=[org.slug]),
        reverse("agent_list", args=[org.slug]),
        reverse("members", args=[org.slug]),
    ):
        page = client.get(url).content.decode()
        assert 'id="bithuman-suspended-banner"' in page, url
        assert "top up" in page.lower()
    detail = client.get(reverse("agent_detail", args=[org.slug, agent.public_id])).content
    assert agent.error_request_id in detail.decode()
    assert "quote this to bitHuman support" in detail.decode()

    # Lifted at bitHuman: the next answered call clears the banner.
    _sandbox_account(org, suspended=False)
    assert connections.connection_account(connection=connections.connection_get(org=org))
    org.refresh_from_db()
    assert org.bithuman_suspended_at is None
    page = client.get(reverse("agent_list", args=[org.slug])).content.decode()
    assert "bithuman-suspended-banner" not in page


def test_the_api_shows_the_request_id_of_a_failure(sandbox_api, org, member):
    # A refusal only bitHuman can make (a short balance is refused before sending: agents.usage):
    # essence-2 for a cartoon subject, 422 MODEL_SUBJECT_MISMATCH.
    agent = _create(member, model="essence-2", prompt="A cartoon mascot")
    agent.refresh_from_db()
    assert agent.status == AgentStatus.FAILED and agent.error_request_id
    api = ApiClient(make_key(org))
    body = api.get(f"/agents/{agent.public_id}").json()
    assert body["error_request_id"] == agent.error_request_id

    stranger = AgentFactory(organization=org, code="A00NOP0000", status="ready")
    refused = api.patch(f"/agents/{stranger.public_id}", {"system_prompt": "New"})
    error = refused.json()["error"]
    assert refused.status_code == 409
    assert error["details"]["upstream_request_id"].startswith("req_")


def test_a_refused_prompt_keeps_and_shows_the_request_id(sandbox_api, org, member):
    stranger = AgentFactory(organization=org, code="A00NOP0000", status="ready")
    response = client_for(member).post(
        reverse("agent_prompt", args=[org.slug, stranger.public_id]),
        {"system_prompt": "My carefully written prompt"},
    )
    revision = PromptRevision.objects.get()
    assert revision.error_request_id.startswith("req_")
    assert revision.error_request_id in response.content.decode()
    assert Agent.objects.count() == 1


def test_a_generation_bithuman_takes_clears_the_suspension_mark(sandbox_api, org, member):
    _sandbox_account(org, suspended=True)
    _create(member, "Bo")
    org.refresh_from_db()
    assert org.bithuman_suspended_at is not None
    _sandbox_account(org, suspended=False)
    assert _create(member, "Cy").status == AgentStatus.PROCESSING
    org.refresh_from_db()
    assert org.bithuman_suspended_at is None and org.bithuman_suspended_request_id == ""
