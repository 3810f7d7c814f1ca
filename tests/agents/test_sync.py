"""The sync with bitHuman (issue 16, item 1): prompt changes and deletions made outside the portal
show in the agent's history, within the account's Read budget (the sandbox, over HTTP)."""

import pytest
from django.urls import reverse

from agents import ratelimit, readbudget, sync, tasks
from agents.models import Agent, AgentStatusChange, PromptRevision, StatusSource
from organizations import connections
from portal.models import ConnectionMode
from tests.agents import outside
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)


def _imported(org, prompt: str) -> Agent:
    code = outside.generate(org, prompt)
    outside.clock_advance(org, 3600)
    response = ApiClient(make_key(org)).post("/agents/import", {"codes": [code]})
    assert response.status_code == 201, response.content
    return Agent.objects.get(code=code)


def test_a_prompt_changed_at_bithuman_becomes_a_revision_marked_so(sandbox_api, org, member):
    agent = _imported(org, "You are Rex, a patient librarian.")
    outside.prompt_set(org, agent.code, "You are Rex, a strict librarian.")

    assert tasks.agents_sync() == 1
    agent.refresh_from_db()
    assert agent.system_prompt == "You are Rex, a strict librarian."
    newest = PromptRevision.objects.filter(agent=agent).first()
    assert (newest.origin, newest.text, newest.author) == ("bithuman", agent.system_prompt, None)
    page = client_for(member).get(reverse("agent_detail", args=[org.slug, agent.public_id]))
    body = page.content.decode()
    assert "Revision 2 (changed at bitHuman)" in body
    assert '<del class="diff-del">patient</del><ins class="diff-add">strict</ins>' in body
    api = ApiClient(make_key(org))
    assert api.get(f"/agents/{agent.public_id}").json()["system_prompt"] == agent.system_prompt

    assert tasks.agents_sync() == 0  # nothing new: nothing written
    assert PromptRevision.objects.filter(agent=agent).count() == 2


def test_a_deletion_at_bithuman_is_shown_not_silently_removed(sandbox_api, org, member):
    agent = _imported(org, "You are Rex.")
    kept = _imported(org, "You are Ida.")
    sync.organizations_sync()  # both seen in this account
    outside.delete(org, agent.code)

    report = sync.organizations_sync()
    assert report.deleted == 1
    agent.refresh_from_db()
    assert agent.upstream_deleted_at is not None and agent.archived_at is None
    assert Agent.objects.get(pk=kept.pk).upstream_deleted_at is None
    change = AgentStatusChange.objects.filter(agent=agent).last()
    assert change.source == StatusSource.SYNC and "Deleted at bitHuman" in change.message

    client = client_for(member)
    page = client.get(reverse("agent_detail", args=[org.slug, agent.public_id])).content.decode()
    assert 'id="agent-deleted-upstream"' in page and "Save prompt" not in page
    assert "Start session" not in page
    listing = client.get(reverse("agent_list", args=[org.slug])).content.decode()
    assert agent.name in listing and "Deleted at bitHuman" in listing
    body = ApiClient(make_key(org)).get(f"/agents/{agent.public_id}").json()
    assert body["deleted_at_bithuman"] is not None
    assert sync.organizations_sync().deleted == 0  # once


def test_the_sync_stays_within_the_read_budget(sandbox_api, org):
    agent = _imported(org, "You are Rex.")
    outside.prompt_set(org, agent.code, "Changed elsewhere.")
    key = readbudget.account_of(connections.connection_get(org=org))
    limit = ratelimit.read_limit(key=key)
    ratelimit.tokens_take(key=key, wanted=10 * limit, per_minute=limit)  # the poller used it

    report = sync.organizations_sync()
    assert (report.requests, report.incomplete, report.prompts_changed) == (0, 1, 0)
    agent.refresh_from_db()
    assert agent.system_prompt == "You are Rex."

    ratelimit.account_defer(key=key, seconds=60)  # a 429's Retry-After
    assert sync.organizations_sync().requests == 0


def test_agents_of_another_account_are_never_marked_deleted(sandbox_api, org, other_org):
    agent = _imported(org, "You are Rex.")
    sync.organizations_sync()
    assert Agent.objects.get(pk=agent.pk).bithuman_account
    # The organization now uses another bitHuman account: its agents are not in it.
    connection = connections.connection_get(org=org)
    connection.mode = ConnectionMode.LIVE
    connection.live_secret = connections.connection_get(org=other_org).sandbox_secret
    connection.save()
    report = sync.organizations_sync()
    assert report.deleted == 0 and report.incomplete == 0
    assert Agent.objects.get(pk=agent.pk).upstream_deleted_at is None


def test_beat_runs_the_sync_on_its_interval(settings):
    from django.conf import settings as django_settings

    entry = django_settings.CELERY_BEAT_SCHEDULE["agents-sync"]
    assert entry["task"] == "agents.tasks.agents_sync"
    assert entry["schedule"].total_seconds() == django_settings.AGENT_SYNC_INTERVAL
    assert tasks.agents_sync.name == entry["task"]
