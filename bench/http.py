"""Benchmarks 4 and 5: the API and the pages under wrk."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench import stack
from bench.report import Report

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
    from organizations import apikeys
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
    key = apikeys.api_key_create(
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
