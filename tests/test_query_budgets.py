"""Query budgets: pages, fragments and API operations send a fixed number of queries, whatever
the number of rows (measured with 1 and with 50 objects), and each stays under a ceiling.

The poll tick's round trips are checked too: a batch costs a constant number of statements,
whatever the number of agents in it (claim, load, connections, one compare-and-set UPDATE for
every answer, one INSERT of the history rows, one UPDATE releasing the leases).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agents import poller, ratelimit
from agents.models import Agent, AgentStatusChange
from organizations import connections
from portal.bithuman import types as bh
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.factories import AgentFactory, AgentSessionFactory, SessionEventFactory

pytestmark = pytest.mark.django_db

# Ceilings per request. A view that needs more should say why here.
PAGE_BUDGET = 15
API_BUDGET = 10


def _queries(call: Callable[[], Any]) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = call()
    status = getattr(response, "status_code", 200)
    assert status == 200, (status, getattr(response, "content", b"")[:300])
    return len(ctx.captured_queries)


def _same_with_1_and_50(
    make: Callable[[], Any], call: Callable[[Any], Any], *, budget: int
) -> None:
    """`call(first)` costs the same with 1 object and with 50, and at most `budget` queries."""
    first = make()
    call(first)  # warm caches that are per process, not per request
    one = _queries(lambda: call(first))
    for _ in range(49):
        make()
    fifty = _queries(lambda: call(first))
    assert fifty == one, f"{one} queries with 1 object, {fifty} with 50"
    assert one <= budget, f"{one} queries, budget {budget}"


# --- Pages and fragments ------------------------------------------------------------------------


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "fragment"])
def test_agent_list(org, member, htmx):
    client = client_for(member)
    url = reverse("agent_list", args=[org.slug])
    headers = {"HX-Request": "true"} if htmx else {}
    _same_with_1_and_50(
        lambda: AgentFactory(organization=org, status="generating", progress=0.3),
        lambda _agent: client.get(url, headers=headers),
        budget=PAGE_BUDGET,
    )


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "progress-fragment"])
def test_agent_detail(org, member, htmx):
    client = client_for(member)
    headers = {"HX-Request": "true"} if htmx else {}
    _same_with_1_and_50(
        lambda: AgentFactory(organization=org, status="generating", progress=0.3),
        lambda agent: client.get(
            reverse("agent_detail", args=[org.slug, agent.public_id]), headers=headers
        ),
        budget=PAGE_BUDGET,
    )


def test_session_list(org, member):
    client = client_for(member)
    agent = AgentFactory(organization=org)
    url = reverse("session_list", args=[org.slug])
    _same_with_1_and_50(
        lambda: AgentSessionFactory(agent=agent),
        lambda _session: client.get(url),
        budget=PAGE_BUDGET,
    )


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "fragment"])
def test_session_console_with_its_events(org, member, htmx):
    client = client_for(member)
    session = AgentSessionFactory(agent=AgentFactory(organization=org))
    headers = {"HX-Request": "true"} if htmx else {}
    _same_with_1_and_50(
        lambda: SessionEventFactory(session=session),
        lambda _event: client.get(
            reverse("session_console", args=[org.slug, session.public_id]), headers=headers
        ),
        budget=PAGE_BUDGET,
    )


# --- API operations -----------------------------------------------------------------------------


@pytest.fixture
def api(org):
    return ApiClient(make_key(org))


def test_api_agent_list_and_get(org, api):
    _same_with_1_and_50(
        lambda: AgentFactory(organization=org),
        lambda _agent: api.get("/agents", limit=100),
        budget=API_BUDGET,
    )
    _same_with_1_and_50(
        lambda: AgentFactory(organization=org),
        lambda agent: api.get(f"/agents/{agent.public_id}"),
        budget=API_BUDGET,
    )


def test_api_agent_history(org, api):
    agent = AgentFactory(organization=org)
    from agents.models import AgentStatusChange

    _same_with_1_and_50(
        lambda: AgentStatusChange.objects.create(agent=agent, to_status="ready", source="poll"),
        lambda _change: api.get(f"/agents/{agent.public_id}/history"),
        budget=API_BUDGET,
    )


def test_api_session_list_get_and_events(org, api):
    agent = AgentFactory(organization=org)
    _same_with_1_and_50(
        lambda: AgentSessionFactory(agent=agent),
        lambda _session: api.get("/sessions", limit=100),
        budget=API_BUDGET,
    )
    session = AgentSessionFactory(agent=agent)
    _same_with_1_and_50(
        lambda: SessionEventFactory(session=session),
        lambda _event: api.get(f"/sessions/{session.public_id}/events", limit=100),
        budget=API_BUDGET,
    )
    _same_with_1_and_50(
        lambda: SessionEventFactory(session=session),
        lambda _event: api.get(f"/sessions/{session.public_id}"),
        budget=API_BUDGET,
    )


# --- The poll tick ------------------------------------------------------------------------------

# One batch, whatever its size: claim (SELECT ... FOR UPDATE SKIP LOCKED, UPDATE the leases),
# load the agents, their connections, the compare-and-set UPDATE of every answer, the INSERT of
# the history rows, the UPDATE releasing the leases. The tick ends with one more, empty claim.
# Inside the test's transaction each atomic block (the claim, the apply) adds a SAVEPOINT and
# its RELEASE, which in production are the transaction's BEGIN and COMMIT.
TICK_QUERIES_PER_BATCH = 7 + 2 * 2
TICK_QUERIES_LAST_CLAIM = 1 + 2


def _tick_queries(
    org, monkeypatch, count: int, *, answer: str = "generating"
) -> tuple[int, poller.PollReport]:
    """(queries, report) of one tick over `count` due agents; bitHuman answers every agent with
    a new status and progress (the costly case: every row changes and gets a history row)."""
    secret = connections.connection_get(org=org).api_secret
    ratelimit.plan_remember(key=ratelimit.account_key(secret), plan="enterprise")

    def fetch(plan):
        results = {
            agent.pk: bh.AgentStatus(status=answer, progress=0.5, current_step="lip_sync")
            for _group, agents in plan
            for agent in agents
        }
        return results, {}

    monkeypatch.setattr(poller, "_statuses_fetch", fetch)
    Agent.objects.all().delete()
    now = timezone.now()
    AgentFactory.create_batch(
        count,
        organization=org,
        status="processing",
        progress=0.1,
        current_step="video",
        submitted_at=now,
        next_poll_at=now,
    )
    with CaptureQueriesContext(connection) as ctx:
        report = poller.tick()
    return len(ctx.captured_queries), report


def test_tick_round_trips_do_not_grow_with_the_agents_of_a_batch(org, monkeypatch, settings):
    settings.AGENT_POLL_BATCH = 200
    one, report_one = _tick_queries(org, monkeypatch, 1)
    fifty, report_fifty = _tick_queries(org, monkeypatch, 50)
    assert (report_one.changed, report_fifty.changed) == (1, 50)
    assert AgentStatusChange.objects.filter(to_status="generating").count() == 50
    assert one == fifty == TICK_QUERIES_PER_BATCH + TICK_QUERIES_LAST_CLAIM, (one, fifty)


def test_tick_round_trips_grow_with_batches(org, monkeypatch, settings):
    settings.AGENT_POLL_BATCH = 10
    queries, report = _tick_queries(org, monkeypatch, 50)
    assert report.changed == 50
    assert queries == 5 * TICK_QUERIES_PER_BATCH + TICK_QUERIES_LAST_CLAIM, queries
