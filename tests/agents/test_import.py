"""Import from bitHuman (issue 16, item 1): agents made outside the portal, in the org's bitHuman
account, listed and brought in through the page and the API, against the sandbox over HTTP."""

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from activity.models import AuditEvent
from agents import poller
from agents.models import Agent, AgentStatus, AgentStatusChange, PromptRevision, StatusSource
from organizations import connections
from portal.models import ConnectionMode
from tests.agents import outside
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _ready_outside(org, prompt: str) -> str:
    code = outside.generate(org, prompt)
    outside.clock_advance(org, 3600)
    assert outside.status_of(org, code) == "ready"
    return code


def _share_account(org, other_org) -> None:
    """other_org uses org's bitHuman account (Live mode with the same secret; BITHUMAN_API_URL
    is the sandbox here)."""
    mine = connections.connection_get(org=org)
    theirs = connections.connection_get(org=other_org)
    theirs.mode = ConnectionMode.LIVE
    theirs.live_secret = mine.sandbox_secret
    theirs.save()


def test_the_page_lists_outside_agents_and_imports_the_chosen_one(sandbox_api, org, admin):
    rex = _ready_outside(org, "You are Rex, a patient librarian.")
    other = outside.generate(org, "You are Ida, a ski instructor.")
    here = AgentFactory(organization=org, code=other)  # already in the organization
    client = client_for(admin)
    url = reverse("agent_import", args=[org.slug])

    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert rex in body and f'value="{rex}"' in body
    assert f'value="{here.code}"' not in body  # already here: not offered

    response = client.post(url, {"codes": [rex]})
    agent = Agent.objects.get(code=rex)
    assert response["Location"] == reverse("agent_detail", args=[org.slug, agent.public_id])
    assert (agent.organization, agent.origin, agent.status) == (org, "imported", "ready")
    assert agent.system_prompt == "You are Rex, a patient librarian."
    assert agent.model == "expression-1" and agent.created_by == admin.user
    first = PromptRevision.objects.get(agent=agent)
    assert (first.text, first.origin, first.accepted) == (agent.system_prompt, "imported", True)
    assert AgentStatusChange.objects.get(agent=agent).source == StatusSource.IMPORT
    audit = AuditEvent.objects.get(organization=org, action="agent.imported")
    assert audit.details["code"] == rex

    detail = client.get(response["Location"]).content.decode()
    assert "Revision 1 (imported from bitHuman)" in detail and "imported" in detail
    assert f'value="{rex}"' not in client.get(url).content.decode()  # no longer offered


def test_only_admins_import(sandbox_api, org, member, viewer):
    url = reverse("agent_import", args=[org.slug])
    for person in (member, viewer):
        assert client_for(person).get(url).status_code == 403
        assert client_for(person).post(url, {"codes": ["A00NOP0000"]}).status_code == 403
    listing = client_for(member).get(reverse("agent_list", args=[org.slug])).content.decode()
    assert "Import from bitHuman" not in listing


def test_an_agent_still_generating_is_imported_and_polled_to_ready(sandbox_api, org, owner):
    code = outside.generate(org, "You are Mo, a night-shift nurse.")
    client_for(owner).post(reverse("agent_import", args=[org.slug]), {"codes": [code]})
    agent = Agent.objects.get(code=code)
    assert agent.status in {"processing", "generating", "completed", "success"}
    assert agent.next_poll_at is not None  # followed like the others
    outside.clock_advance(org, 3600)
    Agent.objects.filter(pk=agent.pk).update(next_poll_at=agent.created_at)
    poller.tick()
    agent.refresh_from_db()
    assert agent.status == AgentStatus.READY and agent.ready_at is not None


def test_a_refused_code_imports_nothing_and_says_why_on_the_page(sandbox_api, org, admin):
    good = _ready_outside(org, "You are Rex.")
    response = client_for(admin).post(
        reverse("agent_import", args=[org.slug]), {"codes": [good, "A00NOP0000"]}
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "Nothing was imported" in body and "A00NOP0000" in body
    assert "bitHuman has no agent with this code" in body
    assert not Agent.objects.exists()


def test_the_api_imports_and_answers_each_refused_code(sandbox_api, org):
    api = ApiClient(make_key(org))
    good = _ready_outside(org, "You are Rex.")
    here = AgentFactory(organization=org, code=outside.generate(org, "You are Ida."))

    listed = api.get("/agents/importable")
    assert listed.status_code == 200
    assert [item["code"] for item in listed.json()["items"]] == [good]

    refused = api.post("/agents/import", {"codes": [good, "A00NOP0000", here.code, "no way"]})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "import_refused"
    assert {code: problem["code"] for code, problem in error["details"]["codes"].items()} == {
        "A00NOP0000": "not_found",
        here.code: "already_imported",
        "no way": "invalid_code",
    }
    assert Agent.objects.count() == 1  # all or none

    imported = api.post("/agents/import", {"codes": [good]})
    assert imported.status_code == 201
    item = imported.json()["items"][0]
    assert (item["agent_code"], item["origin"], item["attempt"], item["status"]) == (
        good,
        "imported",
        1,
        "ready",
    )
    assert api.get(f"/agents/{item['id']}").json()["system_prompt"] == "You are Rex."
    assert api.post("/agents/import", {"codes": []}).status_code == 422


def test_another_organizations_account_agent_is_not_found_and_its_import_404s(
    sandbox_api, org, other_org
):
    code = _ready_outside(org, "You are Rex.")
    api, other_api = ApiClient(make_key(org)), ApiClient(make_key(other_org))
    # other_org has its own bitHuman account: org's agent is as unknown as a made-up code.
    theirs = other_api.post("/agents/import", {"codes": [code]}).json()["error"]
    made_up = other_api.post("/agents/import", {"codes": ["A99ZZZ9999"]}).json()["error"]
    assert theirs["details"]["codes"][code] == {
        **made_up["details"]["codes"]["A99ZZZ9999"],
    }
    item = api.post("/agents/import", {"codes": [code]}).json()["items"][0]
    assert other_api.get(f"/agents/{item['id']}").status_code == 404
    assert other_api.post(f"/agents/{item['id']}/retry").status_code == 404


def test_one_agent_belongs_to_one_organization_even_on_a_shared_account(
    sandbox_api, org, other_org, owner, other_owner
):
    _share_account(org, other_org)
    code = _ready_outside(org, "You are Rex.")
    ApiClient(make_key(org)).post("/agents/import", {"codes": [code]})

    refused = ApiClient(make_key(other_org)).post("/agents/import", {"codes": [code]})
    assert refused.status_code == 422
    problem = refused.json()["error"]["details"]["codes"][code]
    assert problem["code"] == "owned_elsewhere"
    assert "Acme" not in refused.content.decode() and "acme" not in refused.content.decode()
    page = client_for(other_owner).get(reverse("agent_import", args=[other_org.slug]))
    body = page.content.decode()
    assert "In another organization of the portal" in body and f'value="{code}"' not in body
    assert "Acme" not in body.replace(other_org.name, "")
    assert Agent.objects.filter(code=code).count() == 1
    # The database enforces it too.
    with pytest.raises(IntegrityError), transaction.atomic():
        AgentFactory(organization=other_org, code=code)


def test_the_page_says_so_when_bithuman_cannot_be_reached(org, admin, settings):
    settings.SANDBOX_BASE_URL = "http://127.0.0.1:9/sandbox"  # nothing listens there
    page = client_for(admin).get(reverse("agent_import", args=[org.slug]))
    assert page.status_code == 200
    assert "bitHuman could not list the account" in page.content.decode()
    failed = ApiClient(make_key(org)).post("/agents/import", {"codes": ["A12BCD3456"]})
    assert failed.status_code in (502, 503) and not Agent.objects.exists()
