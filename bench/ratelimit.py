"""Benchmark 2: the shared bitHuman rate-limit buckets under load."""

from __future__ import annotations

import itertools
import json
import time

from bench import stack
from bench.report import Report, percentile

# --- 2. Rate limits -------------------------------------------------------------------------------


def bench_ratelimit(report: Report, seconds: float) -> None:
    from django.core.cache import cache

    from agents import ratelimit
    from bench import seed, tasks

    seed.agents_park()
    tenant = seed.tenant_create(plan="free", prefix="free")
    cache.delete(ratelimit._plan_cache_key(ratelimit.account_key(tenant.secret)))  # learn it
    agents = seed.agents_create(tenant=tenant, count=200)
    codes = {agent.code for agent in agents}
    redis = tasks._redis()
    redis.delete(cache.make_key(tasks.REQUEST_LOG))
    cache.set("bench:log-requests", 1, 3600)
    beat = stack.beat_start()
    with stack.running(beat):
        time.sleep(seconds)
    cache.delete("bench:log-requests")
    time.sleep(2)
    entries = [json.loads(e) for e in redis.lrange(cache.make_key(tasks.REQUEST_LOG), 0, -1)]
    # This account's reads: the status polls of its agents (the log also holds other accounts'
    # requests, e.g. the periodic sync listing every benchmark organization's agents).
    reads = sorted(
        e["t"] for e in entries if e["m"] == "GET" and e["p"].rsplit("/", 1)[-1] in codes
    )
    limited = sum(1 for e in entries if e["s"] == 429)
    # The most reads in any 60-second window, and in the last full minute (steady state).
    busiest, j = 0, 0
    for i, t in enumerate(reads):
        while reads[j] < t - 60:
            j += 1
        busiest = max(busiest, i - j + 1)
    polls: dict[str, list[float]] = {}
    for e in entries:
        code = e["p"].rsplit("/", 1)[-1]
        if code in codes and e["s"] == 200:
            polls.setdefault(code, []).append(e["t"])
    gaps = [b - a for times in polls.values() for a, b in itertools.pairwise(times)]
    polled_agents = len(polls)
    report.table(
        "2. Rate-limit respect: 200 agents on one Free account (120 reads/min)",
        [
            "seconds",
            "reads sent",
            "max reads in any 60 s",
            "429s",
            "agents polled",
            "wait p50",
            "wait p95",
            "wait max",
        ],
        [
            [
                f"{seconds:.0f}",
                len(reads),
                busiest,
                limited,
                f"{polled_agents}/200",
                f"{percentile(gaps, 0.5):.0f} s",
                f"{percentile(gaps, 0.95):.0f} s",
                f"{max(gaps, default=float('nan')):.0f} s",
            ]
        ],
        [
            "The poller spends AGENT_POLL_READ_SHARE = 80 % of the plan (96 reads/min on Free), "
            "leaving room for the portal's pages; the first minute may use the burst (the bucket "
            "starts full, as bitHuman's does).",
            "Each agent waits about 200 / 96 per minute = 2.1 minutes between polls: the limit, "
            "not the poller, sets the cadence on a small plan. Webhooks bring a finished agent "
            "in at once regardless.",
            "Reads: the status requests for this account's agents; 429s: every answer 429 the "
            "worker received in the run (the sandbox counts per account, as bitHuman does).",
        ],
    )
