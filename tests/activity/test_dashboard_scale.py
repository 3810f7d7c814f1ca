"""The dashboard's query count does not grow with the organization: 2,000 agents (with sessions
and messages) cost the same queries as 20. Timing at 100,000 agents is measured by the benchmark
(bench/dashboard.py), not here."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Agent, AgentStatus
from sessions.models import AgentSession, EventKind, SessionEvent, SessionStatus
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

MODELS = ("essence-1", "expression-1", "essence-2", "expression-2")
STATUSES = (AgentStatus.READY,) * 7 + (AgentStatus.FAILED, AgentStatus.GENERATING)


def bulk_seed(org, count: int, start: int = 0) -> None:
    now = timezone.now()
    agents = []
    for n in range(start, start + count):
        created = now - timedelta(days=n % 90, hours=1 + n % 20)
        status = STATUSES[n % len(STATUSES)]
        agents.append(
            Agent(
                organization=org,
                name=f"Scale {n}",
                model=MODELS[n % len(MODELS)],
                status=status,
                progress=0.5 if status == AgentStatus.GENERATING else 1.0,
                created_at=created,
                submitted_at=created,
                ready_at=created + timedelta(minutes=3 + n % 7)
                if status == AgentStatus.READY
                else None,
                failed_at=created + timedelta(minutes=1) if status == AgentStatus.FAILED else None,
            )
        )
    made = Agent.objects.bulk_create(agents, batch_size=1000)
    ready = [a for a in made if a.status == AgentStatus.READY][: max(1, count // 10)]
    sessions = AgentSession.objects.bulk_create(
        AgentSession(
            organization=org,
            agent=agent,
            kind="hosted",
            room_url="https://example.invalid/room",
            status=SessionStatus.ENDED,
            started_at=agent.ready_at,
            ended_at=agent.ready_at + timedelta(minutes=4),
        )
        for agent in ready
    )
    SessionEvent.objects.bulk_create(
        SessionEvent(
            session=session,
            kind=kind,
            text="Hello",
            outcome="delivered",
            created_at=session.started_at + timedelta(seconds=30),
        )
        for session in sessions
        for kind in (EventKind.SPEAK, EventKind.CONTEXT)
    )


def dashboard_queries(client, org) -> dict[int, int]:
    counts = {}
    for days in (7, 30, 90):
        client.get(f"/o/{org.slug}/", {"days": days})  # warm-up: session, caches
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"/o/{org.slug}/", {"days": days})
        assert response.status_code == 200
        counts[days] = len(queries)
    return counts


def test_dashboard_query_count_is_constant_with_2000_agents(org, other_org, viewer):
    client = client_for(viewer)
    bulk_seed(org, 20)
    bulk_seed(other_org, 50)
    small = dashboard_queries(client, org)

    bulk_seed(org, 1980, start=20)
    assert Agent.objects.filter(organization=org).count() == 2000
    large = dashboard_queries(client, org)

    assert large == small  # no per-row queries, whatever the range
    assert max(small.values()) < 40
    html = client.get(f"/o/{org.slug}/", {"days": 90}).content.decode()
    assert html.count('<svg role="img"') == 4
