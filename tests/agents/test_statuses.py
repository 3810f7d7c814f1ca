"""agents.statuses: the forward-only rule's one statement, for a batch and for one agent, and the
poller's leases. The statement is written for the two databases the portal runs on: the suite's
own database (PostgreSQL in CI), and SQLite (`make run`'s default) by running this file again on
it in a subprocess (`test_the_statements_also_hold_on_sqlite`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import statuses
from agents.models import Agent, AgentStatusChange, StatusSource
from portal.tenancy import Role
from tests.factories import MembershipFactory


def _answer(status: str, progress: float, step: str = "video", **fields: Any) -> Any:
    from portal.bithuman import types as bh

    return bh.AgentStatus(status=status, progress=progress, current_step=step, **fields)


@pytest.mark.django_db
def test_a_batch_moves_rows_only_forward_and_keeps_every_side_effect(
    django_capture_on_commit_callbacks: Any, settings: Any
):
    from activity import services as activity_services
    from activity.models import AuditEvent, OutboundDelivery
    from tests.factories import AgentFactory

    settings.WEBHOOK_ALLOW_LOCAL = True
    owner = MembershipFactory(role=Role.OWNER)
    org = owner.organization
    activity_services.webhook_endpoint_create(
        actor=owner, url="http://127.0.0.1:9/in", events=["agent.ready", "agent.failed"]
    )

    def agent(status: str, progress: float, **fields: Any) -> Agent:
        return AgentFactory(organization=org, status=status, progress=progress, **fields)

    behind = agent("generating", 0.6, current_step="video")
    same = agent("generating", 0.5, current_step="video", progress_message="Rendering")
    ahead = agent("processing", 0.1)
    finished = agent("ready", 1.0)
    failing = agent("generating", 0.9, current_step="lip_sync")
    done = agent("success", 0.7, current_step="lip_sync")
    answers = [
        (behind, _answer("generating", 0.5)),  # out of order: behind what we have
        (same, _answer("generating", 0.5, progress_msg="Rendering")),  # nothing new
        (ahead, _answer("generating", 0.5, "lip_sync", supported_models=["essence-1"])),
        (finished, _answer("failed", 0.2, error_message="late")),  # terminal absorbs
        (failing, _answer("failed", 0.2, error_message="No face in the image")),
        (done, _answer("ready", 1.0, "done")),
    ]
    with django_capture_on_commit_callbacks() as callbacks:
        changed = statuses.agent_statuses_apply(answers=answers, source=StatusSource.POLL)
    assert changed == {ahead.pk, failing.pk, done.pk}

    rows = {row.pk: row for row in Agent.objects.all()}
    assert (rows[behind.pk].progress, rows[same.pk].progress) == (0.6, 0.5)
    assert rows[finished.pk].status == "ready" and rows[finished.pk].error_message == ""
    ahead_row = rows[ahead.pk]
    assert (ahead_row.status, ahead_row.progress, ahead_row.current_step) == (
        "generating",
        0.5,
        "lip_sync",
    )
    assert ahead_row.supported_models == ["essence-1"] and ahead_row.consecutive_errors == 0
    assert ahead_row.updated_at > behind.updated_at
    failed = rows[failing.pk]
    assert failed.status == "failed" and failed.error_message == "No face in the image"
    assert failed.failed_at and failed.next_poll_at is None and failed.lease_until is None
    ready = rows[done.pk]
    assert ready.status == "ready" and ready.progress == 1.0 and ready.ready_at
    assert ready.next_poll_at is None
    # The objects passed in show what was written.
    assert (ahead.status, failing.status, done.status) == ("generating", "failed", "ready")
    assert behind.progress == 0.6

    history = set(
        AgentStatusChange.objects.values_list("agent_id", "from_status", "to_status", "source")
    )
    assert history == {
        (ahead.pk, "processing", "generating", "poll"),
        (failing.pk, "generating", "failed", "poll"),
        (done.pk, "success", "ready", "poll"),
    }
    assert AgentStatusChange.objects.get(agent=failing).message == "No face in the image"
    audit = set(AuditEvent.objects.for_org(org).values_list("action", "target_id", "actor_kind"))
    assert {entry for entry in audit if entry[0].startswith("agent.")} == {
        ("agent.failed", str(failing.public_id), "system"),
        ("agent.ready", str(done.public_id), "system"),
    }
    deliveries = {d.event_type: json.loads(d.body)["data"] for d in OutboundDelivery.objects.all()}
    assert deliveries["agent.ready"]["id"] == str(done.public_id)
    assert deliveries["agent.ready"]["status"] == "ready"
    assert deliveries["agent.ready"]["agent_code"] == done.code
    assert deliveries["agent.failed"]["error_message"] == "No face in the image"
    assert len(callbacks) == 2  # each delivery is sent after commit


@pytest.mark.django_db
def test_a_batch_releases_only_its_own_leases_and_keeps_a_moved_time():
    from tests.factories import AgentFactory

    org = MembershipFactory(role=Role.OWNER).organization
    lease = timezone.now() + timedelta(seconds=30)
    later = timezone.now() + timedelta(seconds=5)

    def leased(**fields: Any) -> Agent:
        values = {"status": "generating", "progress": 0.3, "lease_until": lease}
        return AgentFactory(organization=org, **{"next_poll_at": lease, **values, **fields})

    answered = leased(consecutive_errors=2)
    failing = leased(consecutive_errors=2)
    moved = leased(next_poll_at=timezone.now())  # a webhook asked for a poll now
    someone_elses = leased(lease_until=lease + timedelta(seconds=1))
    finished = leased(status="ready")
    statuses.agent_leases_release(
        lease=lease,
        releases=[
            statuses.LeaseRelease(answered.pk, later, errors=0),
            statuses.LeaseRelease(failing.pk, later, errors=1),
            statuses.LeaseRelease(moved.pk, later),
            statuses.LeaseRelease(someone_elses.pk, later),
            statuses.LeaseRelease(finished.pk, later),
        ],
    )
    rows = {row.pk: row for row in Agent.objects.all()}
    assert (rows[answered.pk].lease_until, rows[answered.pk].next_poll_at) == (None, later)
    assert rows[answered.pk].consecutive_errors == 0
    assert rows[failing.pk].consecutive_errors == 3 and rows[failing.pk].next_poll_at == later
    assert rows[moved.pk].lease_until is None and rows[moved.pk].next_poll_at < later
    assert rows[moved.pk].consecutive_errors == 0
    assert rows[someone_elses.pk].lease_until == lease + timedelta(seconds=1)
    assert rows[finished.pk].lease_until == lease  # terminal rows are never touched


@pytest.mark.django_db
def test_one_agent_is_written_by_the_same_statement(django_capture_on_commit_callbacks: Any):
    from tests.factories import AgentFactory

    org = MembershipFactory(role=Role.OWNER).organization
    agent = AgentFactory(organization=org, status="generating", progress=0.4)
    with CaptureQueriesContext(connection) as queries:
        assert statuses.agent_status_apply(
            agent=agent, status=_answer("generating", 0.6, "lip_sync"), source=StatusSource.POLL
        )
    assert any(query["sql"].lstrip().startswith("WITH v") for query in queries.captured_queries)
    assert (agent.progress, agent.current_step) == (0.6, "lip_sync")  # reloaded
    # Behind, then terminal, then anything after terminal.
    assert not statuses.agent_status_apply(
        agent=agent, status=_answer("generating", 0.5), source=StatusSource.WEBHOOK
    )
    with django_capture_on_commit_callbacks():
        assert statuses.agent_status_apply(
            agent=agent, status=_answer("ready", 0.9, "done"), source=StatusSource.WEBHOOK
        )
    assert (agent.status, agent.progress) == ("ready", 1.0) and agent.next_poll_at is None
    assert not statuses.agent_status_apply(
        agent=agent, status=_answer("failed", 0.1), source=StatusSource.POLL
    )
    assert Agent.objects.get(pk=agent.pk).status == "ready"
    sources = list(
        AgentStatusChange.objects.filter(agent=agent)
        .order_by("pk")
        .values_list("from_status", "to_status", "source")
    )
    assert sources == [("generating", "ready", "webhook")]  # progress within a status: no row


@pytest.mark.django_db
def test_a_batch_larger_than_one_statement_is_written_in_chunks(monkeypatch: pytest.MonkeyPatch):
    from tests.factories import AgentFactory

    monkeypatch.setattr(statuses, "_BATCH_ROWS", 2)
    org = MembershipFactory(role=Role.OWNER).organization
    agents = AgentFactory.create_batch(5, organization=org, status="processing", progress=0.0)
    changed = statuses.agent_statuses_apply(
        answers=[(agent, _answer("generating", 0.3)) for agent in agents],
        source=StatusSource.POLL,
    )
    assert changed == {agent.pk for agent in agents}
    assert set(Agent.objects.values_list("status", "progress")) == {("generating", 0.3)}


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="this run is on SQLite: the tests above cover it"
)
def test_the_statements_also_hold_on_sqlite(tmp_path: Path):
    """The tests above, again on SQLite (what `make run` uses without DATABASE_URL)."""
    environment = os.environ | {"DATABASE_URL": f"sqlite:///{tmp_path / 'statuses.sqlite3'}"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-x"],
        env=environment,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
