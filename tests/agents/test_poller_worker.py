"""WORKER TESTS: the poller in real Celery worker processes (`celery -A portal worker --beat`).

Each test starts workers as separate processes with Redis as the broker (database 13 of the
cache's Redis server) and the same Redis as cache, pointed at pytest-django's test database (so
the tests commit: `transaction=True`) and at the sandbox this test process serves over HTTP.
Only beat's ticks move the agent. These tests need PostgreSQL and Redis: without them they fail
with a message saying so; they never skip.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agents import services
from agents.models import Agent, AgentStatus, StatusSource
from tests import workers
from tests.agents.test_poller import Upstream, fresh, sandbox, tenant, upstream, wait_for
from tests.workers import Worker

__all__ = ["sandbox", "upstream"]  # fixtures shared with test_poller.py

BASE_DIR = Path(__file__).resolve().parents[2]
BROKER_DB = 13

pytestmark = pytest.mark.django_db(transaction=True)


def _redis_urls() -> tuple[str, str]:
    return workers.redis_urls(broker_db=BROKER_DB, who="The worker tests")


def _test_database_url() -> str:
    return workers.database_url_for_workers(who="The worker tests")


@pytest.fixture
def start_worker(
    transactional_db: None, live_server: Any, tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    """Start `celery -A portal worker --beat` processes; each is stopped after the test."""
    cache_url, broker_url = _redis_urls()
    env = {
        **os.environ,
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": _test_database_url(),
        "DATABASE_CONN_MAX_AGE": "0",
        "REDIS_URL": cache_url,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "SANDBOX_BASE_URL": live_server.url + "/sandbox",
        "AGENT_POLL_INTERVAL": "0.5",
        "AGENT_POLL_LEASE": "4",  # the fetch deadline is a quarter of it: 1 s
        "PYTHONUNBUFFERED": "1",
    }
    started: list[Worker] = []

    def start(name: str) -> Worker:
        worker = workers.celery_worker(name, env=env, log=tmp_path / f"{name}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def _wait(worker: Worker, condition: Callable[[], Any], *, timeout: float) -> Any:
    try:
        return wait_for(condition, timeout=timeout, step=0.02)
    except AssertionError as error:
        tail = worker.log_text()[-3000:]
        raise AssertionError(f"{error}; {worker.name}'s log:\n{tail}") from None


def _submitted_agent(owner: Any) -> Agent:
    agent = Agent.objects.create(
        organization=owner.org, name="Coach", system_prompt="A friendly coach"
    )
    services.agent_submit(agent_pk=agent.pk)  # the generate request; the row is committed
    agent = fresh(agent)
    assert agent.status == AgentStatus.PROCESSING and agent.code
    return agent


def test_worker_beat_ticks_drive_an_agent_from_submitted_to_ready(
    sandbox: Upstream, start_worker: Callable[..., Worker]
):
    owner = tenant(time_scale=45)  # expression-1's 90 s take 2 s
    worker = start_worker("poller")
    # Submit once the worker is up, so its start-up time (long on a loaded machine) does not
    # eat the 2 s the generation takes: the ticks must see it step by step.
    _wait(worker, lambda: " ready." in worker.log.read_text(errors="replace"), timeout=60)
    agent = _submitted_agent(owner)
    _wait(worker, lambda: fresh(agent).status == AgentStatus.READY, timeout=20)
    agent = fresh(agent)
    assert agent.progress == 1.0 and agent.next_poll_at is None and agent.lease_until is None
    history = list(agent.status_changes.values_list("to_status", "source"))
    assert history[-1] == ("ready", StatusSource.POLL)
    assert len([row for row in history if row[1] == StatusSource.POLL]) >= 2  # step by step
    assert len(sandbox.statuses(owner.key, code=agent.code)) >= 2


def test_worker_killed_mid_tick_leaves_leases_that_expire_and_a_fresh_worker_finishes(
    sandbox: Upstream, start_worker: Callable[..., Worker]
):
    owner = tenant()
    agent = _submitted_agent(owner)
    owner.advance(10_000)  # bitHuman has finished: the first answer that arrives is `ready`
    owner.configure(latency_ms=3000)  # every answer takes 3 s: the first tick is mid-request

    first = start_worker("doomed")
    _wait(first, lambda: sandbox.statuses(owner.key, code=agent.code), timeout=20)
    first.kill()  # after its claim committed, before the answer came back
    killed_at = time.time()
    agent = fresh(agent)
    assert agent.status == AgentStatus.PROCESSING  # the answer never arrived
    assert agent.lease_until is not None  # the dead tick's lease is still there
    lease = agent.lease_until

    owner.configure(latency_ms=0)
    second = start_worker("fresh")
    _wait(second, lambda: fresh(agent).status == AgentStatus.READY, timeout=20)
    later = [seen for seen in sandbox.statuses(owner.key, code=agent.code) if seen.at > killed_at]
    assert later and min(seen.at for seen in later) >= lease.timestamp()  # not before it expired
    assert fresh(agent).lease_until is None
