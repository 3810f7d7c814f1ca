"""Budgets per bitHuman account, not per secret (api/rate-limits.md: "every API secret on the
same account shares the same buckets"): two organizations using two secrets of one sandbox
account share its Read budget (the poller) and its Generate budget (submissions)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from django.urls import reverse

from agents import budgets, poller, queue, ratelimit, readbudget, services
from agents.models import Agent, AgentStatus
from organizations import connections
from portal import accountkeys
from portal.models import BithumanConnection
from portal.tenancy import Role
from sandbox.models import SandboxRateBucket
from sessions import transcripts
from tests.agents import test_poller
from tests.agents.test_poller import Tenant, Upstream, agent_in_flight, tenant
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.factories import AgentFactory, AgentSessionFactory, MembershipFactory

integration = pytest.mark.django_db(transaction=True)
# The poller tests' fixtures: the sandbox over HTTP, and every request that reached it.
upstream = test_poller.upstream
sandbox = test_poller.sandbox


def second_secret(owner: Tenant, base_url: str) -> str:
    """A further secret of the tenant's sandbox account, made as a customer would: bitHuman's
    API-keys endpoint (api/api-keys.md), called with the first secret."""
    headers = {"api-secret": owner.connection.api_secret}
    with httpx.Client(base_url=base_url, headers=headers, timeout=20) as http:
        user_id = http.get("/v1/me").json()["data"]["user_id"]
        created = http.post(f"/v2/{user_id}/api-secrets", json={"alias": "second-org"})
    assert created.status_code == 200, created.text
    return created.json()["secret"]


def organization_on(secret: str) -> Tenant:
    """Another organization whose bitHuman connection uses `secret`."""
    membership = MembershipFactory(role=Role.OWNER)
    connection = connections.connection_get(org=membership.organization)
    BithumanConnection.objects.filter(pk=connection.pk).update(sandbox_secret=secret)
    connection.refresh_from_db()
    return Tenant(membership.organization, connection, None, ratelimit.account_key(secret))  # type: ignore[arg-type]


@integration
def test_two_organizations_on_one_account_share_its_read_budget(sandbox: Upstream, settings: Any):
    settings.AGENT_POLL_READ_SHARE = 1.0  # the whole Free budget: 120 a minute, burst 30
    settings.AGENT_POLL_BATCH = 200
    settings.AGENT_POLL_CONCURRENCY = 16
    first = tenant(plan="free")
    other = organization_on(second_secret(first, settings.SANDBOX_BASE_URL))
    other.account = first.account
    for _ in range(60):
        agent_in_flight(first)
    for _ in range(60):
        agent = agent_in_flight(first)  # made on the one account, belongs to the other org
        Agent.objects.filter(pk=agent.pk).update(organization=other.org)
    before = len(sandbox.requests)  # the API-keys calls above
    started = time.time()
    for _ in range(12):
        poller.tick()
        time.sleep(0.1)
    elapsed = time.time() - started
    mine, theirs = sandbox.of(first.key), sandbox.of(other.key)
    reads = len(sandbox.requests) - before
    # One budget: the burst (30) and the refill (2 a second), however many secrets ask. Per
    # secret, the two organizations would have had 30 each at once.
    assert reads <= 30 + 2 * elapsed + 1
    assert sandbox.bucket_429s == []  # bitHuman (the sandbox, per account) never refused one
    assert mine and theirs
    # Both secrets now name the account, which has the plan /v1/me gave.
    key = ratelimit.budget_key(first.connection.api_secret)
    assert key == ratelimit.budget_key(other.connection.api_secret)
    assert key == accountkeys.user_key(str(first.account.public_id))
    assert ratelimit.read_limit(key=key) == 120
    assert not Agent.objects.filter(status=AgentStatus.FAILED).exists()


def _create(member, name):
    return services.agent_create(
        actor=member,
        name=name,
        system_prompt="A cheerful host",
        model="expression-1",
        aspect_ratio="16:9",
        framing="portrait",
        transparency=False,
        image=services.MediaSource(),
        audio=services.MediaSource(),
    )


@integration
def test_two_organizations_on_one_account_share_its_generate_budget(sandbox: Upstream, settings):
    first = tenant(plan="free")  # 4 generations a minute for the account
    other = organization_on(second_secret(first, settings.SANDBOX_BASE_URL))
    first_member = MembershipFactory(organization=first.org, role=Role.MEMBER)
    other_member = MembershipFactory(organization=other.org, role=Role.MEMBER)

    for n in range(3):
        _create(first_member, f"First {n}")  # the task runs eagerly
    assert Agent.objects.filter(organization=first.org, status=AgentStatus.PROCESSING).count() == 3
    made = [_create(other_member, f"Other {n}") for n in range(3)]
    # The account's fourth generation goes through; its fifth is refused 429 by bitHuman and
    # waits its turn, not failed and not counted as an attempt.
    states = [Agent.objects.get(pk=agent.pk) for agent in made]
    assert [a.status for a in states] == [AgentStatus.PROCESSING] + [AgentStatus.SUBMITTING] * 2
    assert all(a.queued_until and a.submit_attempts == 0 for a in states[1:])
    refused = len(sandbox.bucket_429s)
    assert refused == 1  # the third was held by the portal: it never reached bitHuman

    # The first organization is held too, until the Retry-After bitHuman gave the other one.
    key = ratelimit.budget_key(first.connection.api_secret)
    assert key == ratelimit.budget_key(other.connection.api_secret)
    assert budgets.generate_wait(key=key) > 0
    held = _create(first_member, "First held")
    held.refresh_from_db()
    assert held.status == AgentStatus.SUBMITTING and held.queued_until is not None
    assert len(sandbox.bucket_429s) == refused  # held without a request
    assert held.submit_attempts == 0
    # One line for the account: the first organization's newest waits behind the other's two.
    assert queue.queue_position(held) == 3
    assert queue.queue_position(Agent.objects.get(pk=states[1].pk)) == 1

    # Shown as queued with a place in line, on the page and through the API.
    page = client_for(other_member).get(
        reverse("agent_detail", args=[other.org.slug, states[2].public_id])
    )
    assert "Queued" in page.content.decode() and "Number 2 in line" in page.content.decode()
    body = ApiClient(make_key(other.org)).get(f"/agents/{states[1].public_id}").json()
    assert body["status"] == "queued" and body["queued_until"]

    # When the budget has refilled and the Retry-After has passed, the line goes through.
    SandboxRateBucket.objects.filter(account=first.account, bucket="generate").update(tokens=4.0)
    budgets.generate_release(key=key)
    for agent in [*states[1:], held]:
        Agent.objects.filter(pk=agent.pk).update(queued_until=None)
        services.agent_submit(agent_pk=agent.pk)
    waiting = Agent.objects.filter(status__in=[AgentStatus.SUBMITTING, AgentStatus.FAILED])
    assert not waiting.exists()


@integration
def test_live_sessions_and_transcripts_read_from_the_accounts_budget(sandbox: Upstream, settings):
    """The account-wide pages share the Read budget too: a 429 one organization received holds
    the other organization's live-sessions list and transcript pulls (same account, other
    secret), and neither asks bitHuman meanwhile."""
    first = tenant(plan="free")
    other = organization_on(second_secret(first, settings.SANDBOX_BASE_URL))
    admin = MembershipFactory(organization=other.org, role=Role.ADMIN)
    for member in (MembershipFactory(organization=first.org, role=Role.ADMIN), admin):
        page = client_for(member).get(f"/o/{member.organization.slug}/sessions/account/")
        assert page.status_code == 200
        assert 'data-testid="live-problem"' not in page.content.decode()
    # Each list asked /v1/me for the user_id: both secrets now name the one account.
    key = readbudget.account_of(other.connection)
    assert key == accountkeys.user_key(str(first.account.public_id))
    assert readbudget.account_of(first.connection) == key

    ratelimit.account_defer(key=key, seconds=60)  # as the first organization's 429 does
    settings.LIVE_SESSIONS_CACHE_SECONDS = 0
    before = len(sandbox.requests)
    page = client_for(admin).get(f"/o/{other.org.slug}/sessions/account/")
    assert page.status_code == 200 and "read budget" in page.content.decode()
    session = AgentSessionFactory(
        organization=other.org,
        agent=AgentFactory(organization=other.org, status=AgentStatus.READY),
        upstream_session_id="rs_shared",
    )
    assert transcripts.transcript_pull(session) is None
    assert len(sandbox.requests) == before  # nothing reached bitHuman
