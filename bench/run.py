"""`make bench`: every benchmark of issue 9 against the real stack, one table, bench/results.md.

    python -m bench.run            # N = 1,000, 5,000, 10,000 (about 8 minutes)
    python -m bench.run --quick    # N = 1,000 and shorter runs (about 4 minutes)
    python -m bench.run --only poller,api

Each benchmark is bounded in time; one that fails is reported as failed and the others still run.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import stack
from bench.dashboard import bench_dashboard

RESULTS = Path(__file__).resolve().parent / "results.md"
ALL = ("poller", "ratelimit", "propagation", "api", "pages", "dashboard")


# --- Report ---------------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.sections: list[tuple[str, list[str], list[list[str]], list[str]]] = []

    def table(self, title: str, header: list[str], rows: list[list[Any]], notes: list[str]) -> None:
        self.sections.append((title, header, [[str(c) for c in r] for r in rows], notes))
        print(f"\n## {title}")
        print(" | ".join(header))
        for row in rows:
            print(" | ".join(str(c) for c in row))
        for note in notes:
            print(f"- {note}")

    def markdown(self, *, started: float, args: argparse.Namespace) -> str:
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        memory = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
        pg = subprocess.run(
            ["psql", f"{stack.PG}/postgres", "-Atc", "show server_version"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        redis = subprocess.run(
            ["redis-cli", "-u", stack.REDIS, "INFO", "server"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        redis_version = next(
            (line.split(":")[1] for line in redis.splitlines() if line.startswith("redis_version")),
            "?",
        ).strip()
        lines = [
            "# Benchmark results",
            "",
            f"Written by `make bench` ({'--quick' if args.quick else 'full'} run) on "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {time.monotonic() - started:.0f} s.",
            "",
            f"- Machine: {os.cpu_count()} cores ({cpu}), {int(memory) // 1024} MiB RAM, "
            f"{platform.system()} {platform.release()}",
            f"- Python {platform.python_version()}, PostgreSQL {pg}, Redis {redis_version}",
            f"- gunicorn: {stack.GUNICORN_WORKERS} workers x {stack.GUNICORN_THREADS} threads "
            "(gthread), serving the portal and the sandbox on the same cores; Celery worker: "
            "prefork, concurrency 2; DJANGO_DEBUG=false (production-like), plain HTTP on loopback",
            f"- Sandbox latency {stack.bench_env()['SANDBOX_LATENCY_MS']} ms per request; "
            f"AGENT_POLL_BATCH=200, AGENT_POLL_CONCURRENCY={stack.POLL_CONCURRENCY}, "
            "AGENT_POLL_INTERVAL=5",
            "",
            "The load generator, the portal, the sandbox, PostgreSQL and Redis all share this "
            "machine's cores: every figure is a floor for a deployment that separates them.",
            "",
        ]
        for title, header, rows, notes in self.sections:
            lines += [f"## {title}", ""]
            if header:
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "---|" * len(header))
                lines += ["| " + " | ".join(row) + " |" for row in rows]
                lines.append("")
            lines += [f"- {note}" for note in notes]
            lines.append("")
        return "\n".join(lines)


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def _wait(condition: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


# --- 1. Poller throughput -------------------------------------------------------------------------


def _tick_measured(gunicorn: stack.Process, timeout: float = 90.0) -> dict[str, Any]:
    from django.core.cache import cache

    from bench import tasks

    run_id = uuid.uuid4().hex
    sandbox_cpu, machine = gunicorn.cpu_seconds(), stack.machine_busy_seconds()
    started = time.monotonic()
    tasks.bench_tick.delay(run_id)
    if not _wait(lambda: cache.get(f"bench:tick:{run_id}") is not None, timeout):
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

    _wait(lambda: done() >= len(agent_pks), timeout)
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
        "1. Poller throughput (one tick, 50 agents per sandbox account)",
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
    reads = sorted(e["t"] for e in entries if e["m"] == "GET")
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
                f"{_percentile(gaps, 0.5):.0f} s",
                f"{_percentile(gaps, 0.95):.0f} s",
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
        ],
    )


# --- 3. Status propagation ------------------------------------------------------------------------


def bench_propagation(report: Report, count: int) -> None:
    from django.urls import reverse

    from agents.models import Agent
    from portal import services as portal_services
    from portal.models import Membership
    from portal.tenancy import Role
    from sandbox import services as sandbox_services
    from sandbox.models import SandboxAgent

    seed_ = __import__("bench.seed", fromlist=["seed"])
    seed_.agents_park()
    polling = seed_.tenant_create(prefix="polling")
    hooked = seed_.tenant_create(prefix="hooked")
    cookie_name, session_key = seed_.owner_session(org=hooked.org)
    owner = Membership.objects.get(organization=hooked.org, role=Role.OWNER)
    receiver = stack.BASE + reverse(
        "bithuman_webhook", args=[portal_services.connection_get(org=hooked.org).receiver_token]
    )
    saved = portal_services.connection_live_save(
        actor=owner, api_secret=hooked.secret, receiver_url=receiver
    )
    if not saved.webhook_registered:
        raise RuntimeError(f"webhook not registered: {saved.webhook_problem}")
    lead = 15.0  # seconds before the first agent is ready
    ready_in = [lead + i * 25.0 / count for i in range(count)]
    # Due a little later than now, spread like real agents submitted at different times.
    agents = {
        "webhooks": seed_.agents_create(tenant=hooked, count=count, ready_in=ready_in),
        "polling only": seed_.agents_create(tenant=polling, count=count, ready_in=ready_in),
    }
    for index, agent in enumerate([*agents["webhooks"], *agents["polling only"]]):
        Agent.objects.filter(pk=agent.pk).update(
            next_poll_at=agent.created_at + _seconds(5.0 * (index % 10) / 10)
        )
    sandbox_agents = {
        a.code: a
        for a in SandboxAgent.objects.filter(
            code__in=[x.code for group in agents.values() for x in group]
        ).select_related("account")
    }

    # bitHuman finishes each generation at its moment and sends the webhook then: the sandbox
    # only notices when asked, so this thread asks at each agent's ready moment.
    stop = threading.Event()

    def finisher() -> None:
        order = sorted(
            sandbox_agents.values(), key=lambda a: a.created_at.timestamp() + a.duration_seconds
        )
        for sandbox_agent in order:
            when = sandbox_agent.created_at.timestamp() + sandbox_agent.duration_seconds
            while not stop.is_set() and time.time() < when:
                time.sleep(0.01)
            if stop.is_set():
                return
            sandbox_services.agent_refresh(agent=sandbox_agent)

    beat = stack.beat_start()
    thread = threading.Thread(target=finisher, daemon=True)
    thread.start()
    with stack.running(beat):
        everything = [x.pk for group in agents.values() for x in group]
        _wait(
            lambda: (
                Agent.objects.filter(pk__in=everything, ready_at__isnull=False).count()
                == len(everything)
            ),
            timeout=lead + 25 + 40,
            step=1.0,
        )
        stop.set()
    thread.join(timeout=5)
    rows = []
    for mode, group in agents.items():
        delays = []
        missing = 0
        for agent in Agent.objects.filter(pk__in=[a.pk for a in group]):
            finished = SandboxAgent.objects.get(code=agent.code).finished_at
            if agent.ready_at is None or finished is None:
                missing += 1
                continue
            delays.append((agent.ready_at - finished).total_seconds())
        rows.append(
            [
                mode,
                f"{len(delays)}/{len(group)}",
                f"{_percentile(delays, 0.5):.2f} s",
                f"{_percentile(delays, 0.95):.2f} s",
                f"{max(delays, default=float('nan')):.2f} s",
                f"{_percentile(delays, 0.95) + 2:.2f} s",
            ]
        )
    # The fragment really shows Ready (checked over HTTP for the webhook organization).
    sample = agents["webhooks"][:10]
    shown = 0
    for agent in sample:
        url = stack.BASE + reverse("agent_detail", args=[hooked.org.slug, agent.public_id])
        import httpx

        page = httpx.get(url, headers={"HX-Request": "true"}, cookies={cookie_name: session_key})
        shown += page.status_code == 200 and "Ready" in page.text
    report.table(
        f"3. Status propagation ({count} agents per mode, at the same time)",
        ["mode", "agents ready", "p50", "p95", "max", "p95 on screen (+2 s fragment poll)"],
        rows,
        [
            "Measured from the moment the sandbox made the agent ready (and, with webhooks, "
            "sent agent.ready) to the portal's row turning ready, which is what the progress "
            "fragment renders; the open page re-requests the fragment every 2 s, which adds up "
            f"to 2 s on screen. Fragment checked over HTTP: {shown}/{len(sample)} show Ready.",
            "Polling only: the agent's next poll, due AGENT_POLL_INTERVAL (5 s) after its last "
            "answer, is made by the first tick after that (beat ticks every AGENT_POLL_TICK, "
            "1 s). Webhooks: sandbox delivery task, receiver, agent_poll_one task, one request.",
        ],
    )


def _seconds(value: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)


# --- 4 and 5. HTTP: the API and the pages (wrk) ---------------------------------------------------


def _wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    env: dict[str, str] | None = None,
    threads: int = 2,
) -> dict[str, Any]:
    script = Path(__file__).resolve().parent / "wrk_report.lua"
    completed = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=seconds + 60,
        check=True,
    )
    line = next(x for x in completed.stdout.splitlines() if x.startswith("BENCH_JSON "))
    return json.loads(line.removeprefix("BENCH_JSON "))


_API_ORG: dict[int, tuple[Any, str, list[Any]]] = {}


def _api_org(agents: int) -> tuple[Any, str, list[Any]]:
    """An organization with `agents` ready agents and an API key (made once per run)."""
    if agents not in _API_ORG:
        _API_ORG[agents] = _api_org_create(agents)
    return _API_ORG[agents]


def _api_org_create(agents: int) -> tuple[Any, str, list[Any]]:
    from django.db import connection

    from agents.models import Agent, AgentStatus
    from bench import seed
    from portal import services as portal_services
    from portal.models import ApiScope

    tenant = seed.tenant_create(prefix="api")
    created = []
    for start in range(0, agents, 2000):
        created += seed.agents_create(tenant=tenant, count=min(2000, agents - start))
    Agent.objects.filter(organization=tenant.org).update(
        status=AgentStatus.READY, progress=1.0, next_poll_at=None
    )
    with connection.cursor() as cursor:
        # As autovacuum would soon after a bulk load: planner statistics, and the visibility
        # map that lets the list's count read its index alone.
        cursor.execute("VACUUM ANALYZE agents_agent")
    key = portal_services.api_key_create(
        org=tenant.org, name="bench", scopes=list(ApiScope.values), created_by=None
    ).key
    return tenant, key, created


def bench_api(report: Report, seconds: int, agents: int, gunicorn: stack.Process) -> None:
    import httpx

    from agents.models import Agent
    from sandbox.models import SandboxAgent
    from tests import media

    _tenant, key, created = _api_org(agents)
    api = f"{stack.BASE}/api/v1"
    auth = {"Authorization": f"Bearer {key}"}
    one = created[len(created) // 2]
    rows = []

    def run(name: str, url: str, target: str, **env: str) -> None:
        cpu = gunicorn.cpu_seconds()
        result = _wrk(url, seconds=seconds, connections=16, env={"BENCH_AUTH": key, **env})
        cpu = gunicorn.cpu_seconds() - cpu
        rows.append(
            [
                name,
                f"{result['rps']:.0f}",
                f"{result['p50']:.1f}",
                f"{result['p95']:.1f}",
                f"{result['p99']:.1f}",
                f"{1000 * cpu / max(result['requests'], 1):.2f}",
                f"{result['errors']}/{result['non2xx']}",
                target,
            ]
        )

    run("GET /api/v1/agents/{id}", f"{api}/agents/{one.public_id}", ">= 400/s, p99 < 60 ms")
    run(
        f"GET /api/v1/agents?limit=25 ({agents:,} agents)",
        f"{api}/agents?limit=25",
        ">= 250/s, p99 < 100 ms",
    )

    # Idempotent submit: the first call creates (and submits) the agent, every replay answers it.
    body = {
        "name": "Bench submit",
        "prompt": "A concierge",
        "image_base64": base64.b64encode(media.png_bytes()).decode(),
        "audio_base64": base64.b64encode(media.wav_bytes()).decode(),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(body, handle)
    idem = str(uuid.uuid4())
    first = httpx.post(
        f"{api}/agents",
        content=Path(
            handle.name
        ).read_bytes(),  # the very bytes wrk replays (the key's fingerprint)
        headers={**auth, "Idempotency-Key": idem, "Content-Type": "application/json"},
        timeout=30,
    )
    if first.status_code not in (200, 201, 202):
        raise RuntimeError(f"POST /agents answered {first.status_code}: {first.text[:300]}")
    run(
        "POST /api/v1/agents (idempotent replay)",
        f"{api}/agents",
        "-",
        BENCH_METHOD="POST",
        BENCH_BODY_FILE=handle.name,
        BENCH_IDEMPOTENCY_KEY=idem,
    )

    # speak: a ready agent, a hosted session, its room opened as the embed page would.
    SandboxAgent.objects.filter(code=one.code).update(duration_seconds=0.001)
    Agent.objects.filter(pk=one.pk).update(status="ready")
    started = httpx.post(
        f"{api}/agents/{one.public_id}/sessions", json={"kind": "hosted"}, headers=auth, timeout=30
    )
    if started.status_code != 201:
        raise RuntimeError(f"session start answered {started.status_code}: {started.text[:300]}")
    session = started.json()
    join = httpx.URL(session["join_url"])
    httpx.post(join.copy_with(path=join.path + "/live"), timeout=10).raise_for_status()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as speak:
        json.dump({"message": "Welcome"}, speak)
    run(
        "POST /api/v1/sessions/{id}/speak (sandbox 50 ms)",
        f"{api}/sessions/{session['id']}/speak",
        "-",
        BENCH_METHOD="POST",
        BENCH_BODY_FILE=speak.name,
    )
    report.table(
        f"4. API (wrk, 16 connections, {seconds} s each)",
        [
            "operation",
            "requests/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "server CPU ms/request",
            "errors/non-2xx",
            "target",
        ],
        rows,
        [
            "Server CPU: gunicorn's CPU time (all its workers) over the requests wrk completed: "
            "what a request costs the portal, whatever else the machine was doing (PostgreSQL, "
            "Redis and wrk come on top).",
            "API_RATE_LIMIT_PER_MINUTE is lifted for this run (the limiter would answer 429 "
            "after 600 requests a minute per key); its Redis check is still made per request.",
            f"The {agents:,} agents are written in bulk, then VACUUM ANALYZE (as autovacuum "
            "would soon after a bulk load).",
        ],
    )


def bench_pages(report: Report, seconds: int, agents: int) -> None:
    import httpx
    from django.urls import reverse

    from agents.models import Agent
    from bench import seed
    from sandbox.models import SandboxAgent

    tenant, key, created = _api_org(agents)
    cookie_name, session_key = seed.owner_session(org=tenant.org)
    cookie = f"{cookie_name}={session_key}"
    one = created[len(created) // 2]
    in_flight = created[len(created) // 3]
    Agent.objects.filter(pk=in_flight.pk).update(status="generating", progress=0.4)
    SandboxAgent.objects.filter(code=one.code).update(duration_seconds=0.001)
    api = f"{stack.BASE}/api/v1"
    started = httpx.post(
        f"{api}/agents/{one.public_id}/sessions",
        json={"kind": "hosted"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    started.raise_for_status()
    slug = tenant.org.slug
    pages = [
        ("agents list (50 rows of 10,000)", reverse("agent_list", args=[slug]), False),
        ("agent page", reverse("agent_detail", args=[slug, one.public_id]), False),
        (
            "progress fragment (HTMX)",
            reverse("agent_detail", args=[slug, in_flight.public_id]),
            True,
        ),
        ("session console", reverse("session_console", args=[slug, started.json()["id"]]), False),
    ]
    rows = []
    for name, path, htmx in pages:
        check = httpx.get(
            stack.BASE + path,
            headers={"Cookie": cookie, **({"HX-Request": "true"} if htmx else {})},
        )
        if check.status_code != 200:
            raise RuntimeError(f"{path} answered {check.status_code}")
        env = {"BENCH_COOKIE": cookie, **({"BENCH_HTMX": "1"} if htmx else {})}
        steady = _wrk(stack.BASE + path, seconds=seconds, connections=20, env=env)
        rows.append(
            [
                name,
                f"{steady['rps']:.0f}",
                f"{steady['p50']:.1f}",
                f"{steady['p95']:.1f}",
                f"{steady['p99']:.1f}",
                f"{steady['errors']}/{steady['non2xx']}",
                f"{len(check.content) // 1024} KiB",
            ]
        )
    report.table(
        f"5. Pages (wrk, 20 concurrent users without think time, {seconds} s each)",
        ["page", "requests/s", "p50 ms", "p95 ms", "p99 ms", "errors/non-2xx", "size"],
        rows,
        [
            "20 users hammering with no pause is a far heavier load than 20 people reading; "
            "the progress fragment target (250 requests/s) is met when its requests/s is at "
            "least 250 at that latency.",
        ],
    )


# --- Main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="N = 1,000 and shorter runs")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated: {','.join(ALL)}")
    parser.add_argument("--sizes", default="", help="poller sizes, e.g. 1000,5000")
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS,
        help="where to write the results (default bench/results.md)",
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress in logs
    only = set(args.only.split(","))
    sizes = [int(s) for s in args.sizes.split(",") if s] or (
        [1000] if args.quick else [1000, 5000, 10000]
    )
    started = time.monotonic()
    print("Preparing the database portal_bench, Redis db 11 and static files...")
    stack.database_reset()
    stack.django_setup()
    report = Report()
    gunicorn = stack.gunicorn_start()
    worker = stack.worker_start()
    benchmarks: list[tuple[str, Callable[[], None]]] = [
        ("poller", lambda: bench_poller(report, sizes, gunicorn, worker)),
        ("ratelimit", lambda: bench_ratelimit(report, 65 if args.quick else 130)),
        ("propagation", lambda: bench_propagation(report, 100)),
        ("api", lambda: bench_api(report, 8 if args.quick else 15, 10_000, gunicorn)),
        ("pages", lambda: bench_pages(report, 8 if args.quick else 15, 10_000)),
        ("dashboard", lambda: bench_dashboard(report.table, requests=10 if args.quick else 20)),
    ]
    with stack.running(worker, gunicorn):
        for name, benchmark in benchmarks:
            if name not in only:
                continue
            print(f"\n=== {name} ({time.monotonic() - started:.0f} s so far)", flush=True)
            try:
                benchmark()
            except Exception as error:  # report it, run the others
                traceback.print_exc()
                report.table(f"{name}: FAILED", [], [], [f"{type(error).__name__}: {error}"])
    args.output.write_text(report.markdown(started=started, args=args))
    print(f"\nWrote {args.output} in {time.monotonic() - started:.0f} s")
    _ = statistics  # (kept for ad-hoc analysis)


if __name__ == "__main__":
    main()
