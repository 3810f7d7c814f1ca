"""Benchmark 3: how long a status change takes to reach the portal."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from bench import stack
from bench.report import Report, percentile, wait_until

# --- 3. Status propagation ------------------------------------------------------------------------


def bench_propagation(report: Report, count: int) -> None:
    from django.urls import reverse

    from agents.models import Agent
    from organizations import connections
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
        "bithuman_webhook", args=[connections.connection_get(org=hooked.org).receiver_token]
    )
    saved = connections.connection_live_save(
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
            next_poll_at=agent.created_at + timedelta(seconds=5.0 * (index % 10) / 10)
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
    lags: list[float] = []  # how late the sandbox finished each agent (this thread's own delay)

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
            lags.append(time.time() - when)
            sandbox_services.agent_refresh(agent=sandbox_agent)

    beat = stack.beat_start()
    thread = threading.Thread(target=finisher, daemon=True)
    thread.start()
    with stack.running(beat):
        everything = [x.pk for group in agents.values() for x in group]
        wait_until(
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
                f"{percentile(delays, 0.5):.2f} s",
                f"{percentile(delays, 0.95):.2f} s",
                f"{max(delays, default=float('nan')):.2f} s",
                f"{percentile(delays, 0.95) + 2:.2f} s",
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
            f"The bench's own thread made the sandbox finish {len(lags)} of "
            f"{len(sandbox_agents)} agents, each at most {max(lags, default=0):.2f} s after its "
            "moment (the delays above start when the sandbox finished it).",
        ],
    )
