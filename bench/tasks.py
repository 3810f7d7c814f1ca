"""Celery tasks that only the benchmark worker loads (`celery -A portal worker -I bench.tasks`).

- `bench_tick` runs one real poller tick and records what it cost: wall time, the worker's CPU
  time, and the database round trips (every statement the tick sent).
- `naive_poll_one` is the baseline the poller is compared with: one task per agent, one
  synchronous request, one compare-and-set write.
- Every bitHuman request the worker sends is logged to Redis (time, account, HTTP status), so the
  rate-limit benchmark can count what the sandbox received.
"""

from __future__ import annotations

import json
import time
from typing import Any

from celery import shared_task
from django.core.cache import cache
from django.db import connection

from agents import poller, statuses
from agents.models import Agent, StatusSource
from organizations import connections
from portal.bithuman import core as bh_core
from portal.bithuman import errors as bh_errors

REQUEST_LOG = "bench:requests"
NAIVE_DONE = "bench:naive-done"


def _redis() -> Any:
    return cache._cache.get_client(write=True)  # type: ignore[attr-defined]


_logging: list[float] = [0.0, 0.0]  # [checked at (monotonic), on]


def _logging_on() -> bool:
    """Whether the rate-limit benchmark asked for the log, checked at most once a second: a
    cache read per request would cost more than the request (and block the poller's loop)."""
    now = time.monotonic()
    if now - _logging[0] > 1.0:
        _logging[:] = [now, 1.0 if cache.get("bench:log-requests") else 0.0]
    return bool(_logging[1])


def _log_request(method: str, path: str, status: int) -> None:
    if _logging_on():
        entry = {"t": time.time(), "m": method, "p": path, "s": status}
        _redis().rpush(cache.make_key(REQUEST_LOG), json.dumps(entry))


def _instrument() -> None:
    """Log every answer bitHuman gives the worker: `attempt_log` sees each HTTP response of
    both clients and of the poller's
    batch fetch (retries included)."""
    core = bh_core._ClientCore
    if getattr(core, "_bench_wrapped", False):
        return
    original = core.attempt_log

    def attempt_log(self: Any, *, call: Any, status: int, **kwargs: Any) -> None:
        _log_request(call.method, call.path, status)
        original(self, call=call, status=status, **kwargs)

    core.attempt_log = attempt_log  # type: ignore[method-assign]
    core._bench_wrapped = True  # type: ignore[attr-defined]


_instrument()


class _Counter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


@shared_task
def bench_tick(run_id: str) -> None:
    """One poller tick, measured; the figures go to the cache under `bench:tick:<run_id>`."""
    counter = _Counter()
    cpu = time.process_time()
    started = time.monotonic()
    with connection.execute_wrapper(counter):
        report = poller.tick()
    result = {
        "wall": time.monotonic() - started,
        "cpu": time.process_time() - cpu,
        "queries": counter.count,
        **vars(report),
    }
    cache.set(f"bench:tick:{run_id}", result, 3600)


@shared_task
def naive_poll_one(agent_pk: int) -> None:
    """The naive baseline: one synchronous status request and one write for one agent."""
    agent = Agent.objects.select_related("organization").get(pk=agent_pk)
    connection_ = connections.connection_get(org=agent.organization)
    try:
        with connections.client_for(connection=connection_, max_retries=0) as client:
            status = client.agent_status_get(agent_id=agent.code)
        statuses.agent_status_apply(agent=agent, status=status, source=StatusSource.POLL)
    except bh_errors.BithumanError:
        pass
    finally:
        _redis().incr(cache.make_key(NAIVE_DONE))
