"""Benchmark 1: the poller measured on its own, against the lean stand-in (bench/standin.py).

The stand-in answers `GET /v1/agent/status/{id}` from memory after a fixed latency for a few
hundredths of a millisecond of CPU, so the figures are the poller's, not a simulator's. The
organizations are in Live mode with their own secrets; the Celery workers (and beat) measured
here are started with BITHUMAN_API_URL pointing at the stand-in.

- Capacity: every agent due at once, one real tick (`agents.tasks.agents_poll_tick`, as beat
  sends it) fans out drains, and the clock runs until the stand-in has answered every agent;
  with 1 and with 2 worker processes (Celery prefork concurrency).
- Sustained: 5,000 agents at their 5 s cadence with beat ticking every second, for a while:
  polls per second, and the shortest and longest time between two polls of one agent.
- The naive baseline against the same stand-in in the same run: one Celery task per agent, one
  synchronous client and request, one write (bench/tasks.py `naive_poll_one`), 2 processes.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx

from bench import stack
from bench.report import Report, wait_until

PORT = int(os.environ.get("BENCH_STANDIN_PORT", "8766"))
URL = f"http://127.0.0.1:{PORT}"
LATENCY_MS = float(os.environ.get("BENCH_STANDIN_LATENCY_MS", "50"))
PER_ACCOUNT = 50
ENV = {"BITHUMAN_API_URL": URL}
GOAL_PER_TICK = 5000  # agents per 5 s tick with two worker processes
GOAL_RATIO = 20.0  # times the naive baseline
GOAL_CPU_MS = 1.0  # worker CPU per poll


def standin_start() -> stack.Process:
    process = stack.Process(
        "standin",
        [stack.PY, "-m", "bench.standin", "--port", str(PORT), "--latency-ms", str(LATENCY_MS)],
    )
    if not wait_until(lambda: _alive(), 15, step=0.1):
        process.stop()
        raise RuntimeError(f"the stand-in did not start: see {stack.VAR / 'standin.log'}")
    return process


def _alive() -> bool:
    try:
        return httpx.get(f"{URL}/_standin/stats", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _stats() -> dict[str, Any]:
    return dict(httpx.get(f"{URL}/_standin/stats", timeout=5).json())


def _reset() -> None:
    httpx.post(f"{URL}/_standin/reset", timeout=5)


def _all_due(pks: list[int]) -> None:
    from django.utils import timezone

    from agents.models import Agent

    Agent.objects.filter(pk__in=pks).update(
        next_poll_at=timezone.now(), lease_until=None, consecutive_errors=0
    )


def _leases_left(pks: list[int]) -> int:
    from agents.models import Agent

    return Agent.objects.filter(pk__in=pks, lease_until__isnull=False).count()


def _capacity(*, pks: list[int], worker: stack.Process) -> dict[str, float]:
    """Every agent due, one tick, until the stand-in has answered each once and every drain
    has written its answers and released its leases."""
    from agents import tasks

    _all_due(pks)
    _reset()
    cpu, standin_cpu = worker.cpu_seconds(), _stats()["cpu"]
    machine = stack.machine_busy_seconds()
    started = time.monotonic()
    next_tick = started
    # A tick every second, as beat sends them, until every agent has been answered.
    while _stats()["statuses"] < len(pks) and time.monotonic() - started < 60:
        if time.monotonic() >= next_tick:
            tasks.agents_poll_tick.delay()
            next_tick += 1.0
        time.sleep(0.02)
    answered = _stats()
    wait_until(lambda: _leases_left(pks) == 0, 30, step=0.1)
    elapsed = answered["last"] - started if answered["statuses"] else float("nan")
    return {
        "polled": answered["statuses"],
        "seconds": elapsed,
        "rate": answered["statuses"] / elapsed,
        "cpu_ms": 1000 * (worker.cpu_seconds() - cpu) / max(answered["statuses"], 1),
        "standin_ms": 1000 * (answered["cpu"] - standin_cpu) / max(answered["statuses"], 1),
        "busy": (stack.machine_busy_seconds() - machine)
        / (time.monotonic() - started)
        / (os.cpu_count() or 1),
        "twice": answered["min_interval"] is not None,
    }


def _sustained(*, pks: list[int], worker: stack.Process, seconds: float) -> dict[str, float]:
    """The agents at their cadence with beat ticking: polls per second over `seconds` after a
    warm-up of one cadence, and the gaps between two polls of one agent."""
    _all_due(pks)
    beat = stack.beat_start(name="beat-standin", env=ENV)
    try:
        time.sleep(6.0)  # one cadence: the first pass over a backlog is not the steady state
        _reset()
        cpu = worker.cpu_seconds()
        time.sleep(seconds)
        stats = _stats()
        cpu = worker.cpu_seconds() - cpu
    finally:
        beat.stop()
    return {
        "rate": stats["statuses"] / seconds,
        "agents": stats["agents"],
        "min_gap": stats["min_interval"] or float("nan"),
        "max_gap": stats["max_interval"] or float("nan"),
        "cpu_ms": 1000 * cpu / max(stats["statuses"], 1),
    }


def _naive(*, pks: list[int], worker: stack.Process, timeout: float) -> dict[str, float]:
    from django.core.cache import cache

    from bench import tasks

    redis = tasks._redis()
    redis.set(cache.make_key(tasks.NAIVE_DONE), 0)
    _reset()
    cpu = worker.cpu_seconds()
    started = time.monotonic()
    for pk in pks:
        tasks.naive_poll_one.delay(pk)

    def done() -> int:
        return int(redis.get(cache.make_key(tasks.NAIVE_DONE)) or 0)

    wait_until(lambda: done() >= len(pks), timeout)
    elapsed = time.monotonic() - started
    finished = done()
    cpu = worker.cpu_seconds() - cpu
    redis.delete("celery")  # what is left in the queue
    return {"done": finished, "seconds": elapsed, "rate": finished / elapsed, "cpu": cpu}


def bench_poller_standin(report: Report, sizes: list[int], *, sustained_seconds: float) -> None:
    from bench import seed

    orgs = [seed.standin_tenant_create() for _ in range(max(sizes) // PER_ACCOUNT)]
    agents = {
        org.pk: [a.pk for a in seed.standin_agents_create(org=org, count=PER_ACCOUNT)]
        for org in orgs
    }

    def first(n: int) -> list[int]:
        return [pk for org in orgs[: n // PER_ACCOUNT] for pk in agents[org.pk]]

    everything = first(max(sizes))
    seed.agents_park()
    standin = standin_start()
    rows: list[list[str]] = []
    capacity: dict[tuple[int, int], dict[str, float]] = {}
    sustained: dict[str, float] = {}
    naive: dict[str, float] = {}
    try:
        for processes in (1, 2):
            worker = stack.worker_start(processes, name=f"worker-standin-{processes}", env=ENV)
            try:
                _capacity(pks=first(min(sizes)), worker=worker)  # warm-up, not reported
                for size in sizes:
                    capacity[processes, size] = _capacity(pks=first(size), worker=worker)
                    seed.agents_park()
                if processes == 2:
                    sustained = _sustained(
                        pks=first(GOAL_PER_TICK), worker=worker, seconds=sustained_seconds
                    )
                    seed.agents_park()
                    naive = _naive(pks=everything[:1000], worker=worker, timeout=40)
            finally:
                worker.stop()
                seed.agents_park()
    finally:
        standin.stop()

    naive_rate = naive["rate"]
    period = sustained["agents"] / max(sustained["rate"], 1e-9)
    for size in sizes:
        for processes in (1, 2):
            row = capacity[processes, size]
            rows.append(
                [
                    f"{size:,}",
                    str(processes),
                    f"{row['polled']:,}",
                    f"{row['seconds']:.2f} s",
                    f"{row['rate']:,.0f}",
                    f"{min(size, row['rate'] * 5):,.0f}",
                    f"{row['rate'] / naive_rate:.1f}x",
                    f"{row['cpu_ms']:.2f} ms",
                    f"{row['standin_ms']:.3f} ms",
                    f"{row['busy']:.0%}",
                ]
            )
    report.table(
        "1. Poller against the stand-in: every agent due at once, one tick fanned out",
        [
            "N due",
            "worker processes",
            "polled",
            "until the last answer",
            "polls/s",
            "polled in a 5 s tick",
            "vs naive",
            "worker CPU per poll",
            "stand-in CPU per answer",
            "machine busy",
        ],
        rows,
        [
            f"Stand-in: bench/standin.py, {LATENCY_MS:.0f} ms latency per answer, one asyncio "
            "process on the same cores. Organizations in Live mode, 50 agents per account, "
            "Enterprise plans (the Read budget is not what is measured here).",
            f"Naive baseline (same run, same stand-in, 2 worker processes): one Celery task per "
            f"agent, a new synchronous client, one request and one write: {naive['done']:,} polls "
            f"in {naive['seconds']:.1f} s = {naive_rate:.1f} polls/s "
            f"({1000 * naive['cpu'] / max(naive['done'], 1):.1f} ms worker CPU per poll).",
            "Worker CPU: every process of the Celery worker (consumer and pool) over the "
            "measurement, divided by the polls; it includes the claim, the budget, the requests "
            "and the batched writes.",
            f"Sustained, 2 worker processes and beat (1 s ticks): {GOAL_PER_TICK:,} agents at "
            f"their 5 s cadence for {sustained_seconds:.0f} s: {sustained['rate']:,.0f} polls/s, "
            f"{sustained['agents']:,} agents polled, each every {period:.1f} s on average "
            f"(between two polls of one agent at least {sustained['min_gap']:.2f} s, at most "
            f"{sustained['max_gap']:.2f} s; {sustained['cpu_ms']:.2f} ms worker CPU per poll). "
            "An agent is due one cadence (5 s) after its last answer and the next tick (every "
            "second) takes it, so the period is 5-6 s by design, not for want of capacity.",
        ],
    )
    goal_size = GOAL_PER_TICK if GOAL_PER_TICK in sizes else max(sizes)
    two = capacity[2, goal_size]
    report.goal(
        "Poller (stand-in): agents per 5 s tick, 2 worker processes",
        f">= {GOAL_PER_TICK:,}",
        f"{two['rate'] * 5:,.0f} per 5 s with {goal_size:,} due ({two['rate']:,.0f} polls/s); "
        f"1 process: {capacity[1, goal_size]['rate'] * 5:,.0f}",
        two["rate"] * 5 >= GOAL_PER_TICK,
    )
    report.goal(
        "Poller (stand-in): vs the naive baseline, same run",
        f">= {GOAL_RATIO:.0f}x",
        f"{two['rate'] / naive_rate:.1f}x ({naive_rate:.1f} polls/s naive)",
        two["rate"] / naive_rate >= GOAL_RATIO,
    )
    report.goal(
        "Poller (stand-in): worker CPU per poll",
        f"<= {GOAL_CPU_MS:.0f} ms",
        f"{two['cpu_ms']:.2f} ms (naive {1000 * naive['cpu'] / max(naive['done'], 1):.1f} ms)",
        two["cpu_ms"] <= GOAL_CPU_MS,
    )
