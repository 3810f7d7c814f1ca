"""The organization home as a dashboard: aggregated in the database, SVG charts with text
alternatives, a 7/30/90-day range, in-flight generations."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import AgentStatus
from interfaces import dashboard as selectors
from sessions.models import EventKind, SessionEvent
from tests.conftest import client_for
from tests.factories import AgentFactory, AgentSessionFactory

pytestmark = pytest.mark.django_db


def seed(org, n=3):
    now = timezone.now()
    for i in range(n):
        AgentFactory(
            organization=org,
            status=AgentStatus.READY,
            model="expression-1",
            created_at=now - timedelta(days=i),
            submitted_at=now - timedelta(days=i),
            ready_at=now - timedelta(days=i) + timedelta(seconds=60 * (i + 1)),
        )
    AgentFactory(organization=org, status=AgentStatus.FAILED, created_at=now)
    AgentFactory(organization=org, status=AgentStatus.GENERATING, progress=0.4, name="Busy")
    session = AgentSessionFactory(agent__organization=org, started_at=now - timedelta(minutes=5))
    SessionEvent.objects.create(
        session=session, kind=EventKind.SPEAK, text="Hi", outcome="delivered"
    )


def test_aggregates(org, other_org):
    seed(org)
    seed(other_org)
    board = selectors.dashboard_get(org=org, days=7)
    assert board.totals["agents"] == 6 and board.totals["failed"] == 1
    assert board.totals["sessions"] == 1 and board.totals["messages"] == 1
    (timing,) = [t for t in board.generation_times if t["model"] == "expression-1"]
    assert timing["count"] == 3 and timing["p50"] == pytest.approx(120, abs=1)
    assert timing["p90"] == pytest.approx(168, abs=1)
    assert [a.name for a in board.in_flight] == ["Busy"]
    # 4 non-failed creations (3 x 250 + the generating agent's model) and session minutes.
    assert board.totals["credits"] > 750
    assert len(board.agents_per_day) == 7
    assert len(selectors.dashboard_get(org=org, days=90).agents_per_day) == 90
    assert selectors.dashboard_get(org=org, days=12).days == 7


def test_dashboard_page_renders_charts_with_text_alternatives(org, viewer):
    seed(org)
    client = client_for(viewer)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/o/{org.slug}/", {"days": 30})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<svg role="img"') == 4
    assert '<title id="chart-agents-title">Agents generated per day</title>' in html
    assert '<desc id="chart-agents-desc">' in html and "Data table" in html
    assert 'aria-current="page">30 days' in html
    assert " style=" not in html  # CSP: no inline styles
    assert len(queries) < 40  # a fixed number of aggregate queries, whatever the data size
    seed(org, n=20)
    with CaptureQueriesContext(connection) as more:
        client.get(f"/o/{org.slug}/", {"days": 30})
    assert len(more) <= len(queries)  # more rows, no more queries


def test_percentile_on_sqlite_matches_postgresql_semantics(org):
    """Both backends use continuous (linear) percentiles."""
    seed(org, n=5)
    (timing,) = [
        t
        for t in selectors.dashboard_get(org=org, days=7).generation_times
        if t["model"] == "expression-1"
    ]
    assert timing["p50"] == pytest.approx(180, abs=1)
    assert re.match(r"\d", str(timing["p90"]))
