"""Benchmark 1b: the poller end to end against the sandbox (a full Django app on the same cores),
and the naive baseline against it. The poller's own figures: bench/standin_poller.py."""

from __future__ import annotations

import math
import os
import subprocess
import time
import uuid
from typing import Any

from bench import stack
from bench.report import Report, wait_until

# --- 1. Poller throughput -------------------------------------------------------------------------


def _tick_measured(gunicorn: stack.Process, timeout: float = 90.0) -> dict[str, Any]:
    from django.core.cache import cache

    from bench import tasks

    run_id = uuid.uuid4().hex
    sandbox_cpu, machine = gunicorn.cpu_seconds(), stack.machine_busy_seconds()
    started = time.monotonic()
    tasks.bench_tick.delay(run_id)
    if not wait_until(lambda: cache.get(f"bench:tick:{run_id}") is not None, timeout):
        raise RuntimeError("the tick did not finish in time")
    result = dict(cache.get(f"bench:tick:{run_id}"))
    result["sandbox_cpu"] = gunicorn.cpu_seconds() - sandbox_cpu
    result["machine_cpu"] = stack.machine_busy_seconds() - machine
    result["elapsed"] = time.monotonic() - started
    return result


def _naive_measured(*, agent_pks: list[int], worker: stack.Process, timeout: float) -> dict:
    from django.core.cache import cache

    from bench import tasks

    redis = tasks._redis()
    redis.set(cache.make_key(tasks.NAIVE_DONE), 0)
    cpu = worker.cpu_seconds()
    started = time.monotonic()
    for pk in agent_pks:
        tasks.naive_poll_one.delay(pk)

    def done() -> int:
        return int(redis.get(cache.make_key(tasks.NAIVE_DONE)) or 0)

    wait_until(lambda: done() >= len(agent_pks), timeout)
    elapsed = time.monotonic() - started
    finished = done()
    redis.delete(cache.make_key("celery"))  # drop what is left in the queue
    subprocess.run(
        ["redis-cli", "-u", stack.REDIS, "DEL", "celery"], check=False, stdout=subprocess.DEVNULL
    )
    return {"done": finished, "seconds": elapsed, "cpu": worker.cpu_seconds() - cpu}


def bench_poller(
    report: Report, sizes: list[int], gunicorn: stack.Process, worker: stack.Process
) -> None:
    from bench import seed

    per_account = 50
    tenants = [seed.tenant_create(prefix="poll") for _ in range(max(sizes) // per_account)]
    # Warm-up (connections, imports), not reported.
    seed.agents_park()
    for tenant in tenants[:4]:
        seed.agents_create(tenant=tenant, count=per_account)
    _tick_measured(gunicorn)

    # The naive baseline: one Celery task per agent, one synchronous request each.
    seed.agents_park()
    naive_agents = [a.pk for t in tenants[:6] for a in seed.agents_create(tenant=t, count=50)]
    naive = _naive_measured(agent_pks=naive_agents, worker=worker, timeout=45)
    naive_rate = naive["done"] / naive["seconds"]

    rows = []
    for size in sizes:
        seed.agents_park()
        for tenant in tenants[: size // per_account]:
            seed.agents_create(tenant=tenant, count=per_account)
        tick = _tick_measured(gunicorn)
        rate = tick["requested"] / tick["wall"]
        batches = math.ceil(tick["claimed"] / 200) or 1
        rows.append(
            [
                f"{size:,}",
                f"{tick['requested']:,}",
                f"{min(size, rate * 5):,.0f}",
                f"{tick['wall']:.1f} s",
                f"{rate:,.0f}",
                f"{rate / naive_rate:.1f}x",
                f"{tick['cpu']:.1f} s "
                f"({1000 * tick['cpu'] / max(tick['requested'], 1):.2f} ms/poll)",
                f"{tick['sandbox_cpu']:.1f} s",
                f"{tick['machine_cpu'] / tick['elapsed'] / (os.cpu_count() or 1):.0%}",
                f"{tick['queries']:,} ({tick['queries'] / batches:.0f}/batch, "
                f"{tick['queries'] / max(tick['claimed'], 1):.1f}/agent)",
                f"{tick['errors']}/{tick['deferred']}/{tick['over_budget']}",
            ]
        )
    cpu_per_poll = float(rows[-1][6].split("(")[1].split()[0]) if rows else float("nan")
    report.table(
        "1b. Poller end to end against the sandbox (one drain, 50 agents per sandbox account)",
        [
            "N in flight",
            "polled in the tick",
            "polled in a 5 s tick",
            "tick duration",
            "polls/s",
            "vs naive",
            "worker CPU",
            "sandbox CPU",
            "machine busy",
            "DB round trips",
            "errors/deferred/over budget",
        ],
        rows,
        [
            f"Naive baseline (same run): one Celery task per agent doing one synchronous request "
            f"and one write, worker concurrency 2: {naive['done']} polls in "
            f"{naive['seconds']:.1f} s = {naive_rate:.1f} polls/s "
            f"({1000 * naive['cpu'] / max(naive['done'], 1):.1f} ms worker CPU per poll).",
            "A tick stops claiming after AGENT_POLL_LEASE/4 = 15 s; what is left is polled by "
            "the next tick. 'Polled in a 5 s tick' = polls/s x 5.",
            f"The poller's own cost is {cpu_per_poll:.2f} ms of worker CPU per poll: one core "
            f"would sustain about {1000 / cpu_per_poll:,.0f} polls/s if bitHuman (here the "
            "sandbox, on the same two cores) answered as fast as it is asked.",
        ],
    )
