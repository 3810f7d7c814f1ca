"""Fault injection against the real stack (see conftest.py): each case asserts an outcome.

Workers run with AGENT_POLL_INTERVAL=0.5 and AGENT_POLL_LEASE=4 (a fetch may take 1 s); the
sandbox runs its generations on a fast clock (`time_scale`) so an agent finishes in seconds.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import threading
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.core.management import call_command
from django.db import connection as db_connection
from django.urls import reverse
from django.utils import timezone

from agents import statuses
from agents.models import Agent, AgentStatus, AgentStatusChange, StatusSource
from portal import crypto
from portal.bithuman import webhooks
from portal.bithuman.client import BithumanClient
from portal.models import WebhookDelivery
from sandbox import catalog
from sandbox import services as sandbox_services
from sandbox.models import SandboxAccount, SandboxAgent
from tests.agents.test_poller import Seen, Upstream, agent_in_flight, fresh, tenant
from tests.faults.conftest import (
    POLL_INTERVAL,
    DroppingProxy,
    Figures,
    Stack,
    history_check,
)

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def _ready(agents: list[Agent]) -> bool:
    return all(fresh(agent).status == AgentStatus.READY for agent in agents)


def _count_raises(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count the faults a sandbox fault check (looked up at call time) injects."""
    raised: list[int] = []
    check = getattr(sandbox_services, name)

    def counting(**kwargs: Any) -> None:
        try:
            check(**kwargs)
        except Exception:
            raised.append(1)
            raise

    monkeypatch.setattr(sandbox_services, name, counting)
    return raised


def _finish(figures: Figures, agents: list[Agent]) -> None:
    figures.agents = len(agents)
    figures.lost, figures.duplicated = history_check(agents)
    assert figures.lost == 0 and figures.duplicated == 0
    assert not Agent.objects.filter(pk__in=[a.pk for a in agents], lease_until__isnull=False)


# --- 1. kill -9 mid-tick ------------------------------------------------------------------------


@pytest.mark.fault_case("1 kill -9 mid-tick")
def test_worker_killed_mid_tick_agents_are_polled_after_their_lease_and_end_once(
    sandbox: Upstream, stack: Stack, figures: Figures
):
    owner = tenant(time_scale=15)  # expression-1's 90 s take 6 s
    first = stack.start_worker("doomed")
    agents = [agent_in_flight(owner) for _ in range(6)]  # their clocks start now
    stack.wait(lambda: all(fresh(agent).progress > 0 for agent in agents), timeout=20)

    owner.configure(latency_ms=2500)  # the next answers hang: the tick is mid-request
    slowed_at = time.time()
    stack.wait(lambda: [s for s in sandbox.statuses(owner.key) if s.at > slowed_at], timeout=10)
    first.kill()
    killed_at = time.time()
    figures.faults += 1
    leases = {
        agent.pk: agent.lease_until
        for agent in Agent.objects.filter(pk__in=[a.pk for a in agents], lease_until__isnull=False)
    }
    assert leases, "the killed tick held leases"

    owner.configure(latency_ms=0)
    stack.start_worker("fresh")
    stack.wait(lambda: _ready(agents), timeout=30)
    for agent in agents:
        if agent.pk in leases:
            later = [s for s in sandbox.statuses(owner.key, code=agent.code) if s.at > killed_at]
            assert later and min(s.at for s in later) >= leases[agent.pk].timestamp()
    figures.messages = len(sandbox.statuses(owner.key))
    figures.notes.append(f"{len(leases)} leases outlived the worker")
    _finish(figures, agents)


# --- 2. kill -9 after bitHuman accepted a generate, before our commit ---------------------------


@pytest.mark.fault_case("2 kill -9 before commit")
def test_worker_killed_between_upstream_accept_and_commit_sweeper_adopts_one_generation(
    sandbox: Upstream, stack: Stack, figures: Figures, monkeypatch: pytest.MonkeyPatch
):
    owner = tenant(time_scale=45)
    credits_before = SandboxAccount.objects.get(pk=owner.account.pk).credits
    generate = sandbox_services.agent_generate
    accepted, hold = threading.Event(), threading.Event()
    hold.set()

    def generate_then_hang(**kwargs: Any) -> Any:
        answer = generate(**kwargs)  # committed upstream: charged, generation started
        if hold.is_set() and not answer.replayed:
            accepted.set()
            time.sleep(8)  # the answer is on its way back when the worker dies
        return answer

    monkeypatch.setattr(sandbox_services, "agent_generate", generate_then_hang)
    # Created over a minute ago: the sweeper only adopts rows stuck that long.
    agent = Agent.objects.create(
        organization=owner.org,
        name="Coach",
        system_prompt="A friendly coach",
        created_at=timezone.now() - timedelta(minutes=2),
    )
    worker = stack.start_worker("doomed", beat=False)
    stack.send_task("agents.tasks.agent_submit", agent.pk)
    assert accepted.wait(30), stack.logs()
    worker.kill()
    figures.faults += 1
    hold.clear()

    stuck = fresh(agent)
    assert stuck.status == AgentStatus.SUBMITTING and stuck.code == ""  # our commit never came
    upstream_agents = SandboxAgent.objects.filter(account=owner.account)
    assert upstream_agents.count() == 1

    stack.start_worker("sweeper")
    stack.send_task("agents.tasks.agents_submit_sweep")  # what beat sends every 30 s
    stack.wait(lambda: fresh(agent).status == AgentStatus.READY, timeout=30)
    agent = fresh(agent)
    assert upstream_agents.count() == 1 and agent.code == upstream_agents.get().code
    cost = catalog.CREATION_COST[agent.model]
    assert SandboxAccount.objects.get(pk=owner.account.pk).credits == credits_before - cost
    generates = sandbox.of(owner.key, path_part="/v1/agent/generate")
    assert len(generates) >= 2  # the re-send happened, and was a replay
    figures.messages = len(generates)
    figures.notes.append("1 generation, 1 charge upstream")
    _finish(figures, [agent])


# --- 5. 429 with Retry-After, 5xx, slow answers, dropped connections ----------------------------


def _bursts(seen: list[Seen]) -> list[list[Seen]]:
    """Requests sent together (one tick's concurrent fetches) form a burst."""
    bursts: list[list[Seen]] = []
    for request in sorted(seen, key=lambda s: s.at):
        if bursts and request.at - bursts[-1][-1].at < 0.1:
            bursts[-1].append(request)
        else:
            bursts.append([request])
    return bursts


@pytest.mark.fault_case("5 429/5xx/slow/dropped")
def test_throttling_errors_slowness_and_drops_fail_no_agent(
    sandbox: Upstream,
    stack: Stack,
    figures: Figures,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
):
    settings.SANDBOX_FORCED_RETRY_AFTER = 2
    forced_429s = _count_raises(monkeypatch, "fault_forced_429_check")
    injected_503s = _count_raises(monkeypatch, "fault_error_check")
    throttled = tenant(time_scale=10, force_429_rate=1.0)
    failing = tenant(time_scale=10, error_rate=0.5)
    slow = tenant(time_scale=10, latency_ms=1500)  # longer than a fetch may take (1 s)
    agents = [agent_in_flight(owner) for owner in (throttled, failing, slow) for _ in range(3)]
    proxy = DroppingProxy(stack.sandbox_url, drop_rate=0.2)
    try:
        stack.start_worker("faulty", env={"SANDBOX_BASE_URL": proxy.url})
        time.sleep(7)
        throttled_until = time.time()
        throttled.configure(force_429_rate=0.0)
        slow.configure(latency_ms=0)
        stack.wait(lambda: _ready(agents), timeout=45)
    finally:
        proxy.close()

    assert not Agent.objects.filter(status=AgentStatus.FAILED).exists()
    during = [s for s in sandbox.of(throttled.key) if s.at < throttled_until]
    bursts = _bursts(sandbox.of(throttled.key))
    assert len(during) >= 2, "the throttled account was asked again after Retry-After"
    for previous, following in itertools.pairwise(bursts):
        if previous[0].at < throttled_until:  # answered 429 with Retry-After: 2
            assert following[0].at - previous[-1].at >= 1.95, "sent before Retry-After"
    assert forced_429s and injected_503s and proxy.dropped
    slow_polls = [s for s in sandbox.of(slow.key) if s.at < throttled_until]
    figures.faults = len(forced_429s) + len(injected_503s) + proxy.dropped + len(slow_polls)
    figures.messages = len(sandbox.requests)
    figures.notes.append(
        f"{len(forced_429s)} 429s, {len(injected_503s)} 503s, {len(slow_polls)} slow, "
        f"{proxy.dropped} dropped"
    )
    _finish(figures, agents)


# --- 6. Two beats at once -----------------------------------------------------------------------


@pytest.mark.fault_case("6 two beats at once")
def test_two_beats_never_poll_an_agent_twice_in_one_interval(
    sandbox: Upstream, stack: Stack, figures: Figures
):
    owner = tenant(time_scale=12)  # 7.5 s
    stack.start_worker("beat-a")
    stack.start_worker("beat-b")
    figures.faults += 1
    # The agents start once both workers are up (however long that takes on a busy machine).
    stack.wait(lambda: all(" ready." in w.log_text() for w in stack.workers), timeout=60)
    agents = [agent_in_flight(owner) for _ in range(8)]
    stack.wait(lambda: _ready(agents), timeout=40)
    assert "Scheduler: Sending due task agents-poll" in stack.workers[0].log_text()
    assert "Scheduler: Sending due task agents-poll" in stack.workers[1].log_text()
    for agent in agents:
        arrivals = sorted(s.at for s in sandbox.statuses(owner.key, code=fresh(agent).code))
        assert len(arrivals) >= 2
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        assert min(gaps) >= POLL_INTERVAL * 0.95, f"polled twice in one interval: {gaps}"
    figures.messages = len(sandbox.statuses(owner.key))
    _finish(figures, agents)


# --- 10. Two worker processes draining at once ---------------------------------------------------

_DRAIN = re.compile(r"agents\.tasks\.agents_poll_drain\[[-\w]+\] succeeded in [\d.]+s: (\d+)")


@pytest.mark.fault_case("10 two workers polling")
def test_two_worker_processes_drain_together_no_agent_twice_in_an_interval_none_starved(
    sandbox: Upstream, stack: Stack, figures: Figures
):
    # 12 agents every 0.5 s stay within the Enterprise Read budget (2,304 a minute), so every
    # wait measured is the poller's own.
    owner = tenant(plan="enterprise", time_scale=10)  # expression-1's 90 s take 9 s
    # Small batches: each tick queues several drains (AGENT_POLL_FANOUT, 4), which the two
    # workers (two processes each) run at the same time.
    small = {"AGENT_POLL_BATCH": "3"}
    stack.start_worker("poller-a", env=small)
    stack.start_worker("poller-b", beat=False, env=small)
    figures.faults += 1  # a second worker process polling the same agents
    stack.wait(lambda: all(" ready." in w.log_text() for w in stack.workers), timeout=60)
    agents = [agent_in_flight(owner) for _ in range(12)]
    stack.wait(lambda: _ready(agents), timeout=45)

    polled_by = {
        worker.name: [int(n) for n in _DRAIN.findall(worker.log_text())] for worker in stack.workers
    }
    assert all(sum(counts) > 0 for counts in polled_by.values()), polled_by  # both polled
    worst_gap = 0.0
    for agent in agents:
        arrivals = sorted(s.at for s in sandbox.statuses(owner.key, code=fresh(agent).code))
        assert len(arrivals) >= 2, "an agent was starved"
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        assert min(gaps) >= POLL_INTERVAL * 0.95, f"polled twice in one interval: {gaps}"
        worst_gap = max(worst_gap, *gaps)
    # None starved: every agent came back within its interval plus a few ticks.
    assert worst_gap <= POLL_INTERVAL + 2.0, f"an agent waited {worst_gap:.2f} s"
    figures.messages = len(sandbox.statuses(owner.key))
    figures.notes.append(
        "drains polled " + ", ".join(f"{name}: {sum(c)}" for name, c in polled_by.items())
    )
    figures.notes.append(f"longest wait between polls {worst_gap:.2f} s")
    _finish(figures, agents)


# --- 7. Webhooks: duplicated, late, forged, foreign, before a stale poll ------------------------


def _post_delivery(
    live_server: Any, owner: Any, *, code: str, delivery_id: str, **signing: Any
) -> httpx.Response:
    raw = json.dumps(
        {
            "id": delivery_id,
            "event": "agent.ready",
            "created": int(time.time()),
            "data": {"code": code},
        }
    ).encode()
    headers = webhooks.delivery_headers_build(
        secret=signing.pop("secret", owner.connection.webhook_secret),
        raw_body=raw,
        event="agent.ready",
        delivery_id=delivery_id,
        **signing,
    )
    url = live_server.url + reverse("bithuman_webhook", args=[owner.connection.receiver_token])
    return httpx.post(url, content=raw, headers={**headers, "Content-Type": "application/json"})


@pytest.mark.fault_case("7 hostile webhooks")
def test_bad_webhooks_change_nothing_and_late_answers_do_not_regress(
    sandbox: Upstream, stack: Stack, figures: Figures, live_server: Any, settings: Any
):
    owner, stranger = tenant(), tenant()
    for party in (owner, stranger):  # their bitHuman webhook secrets
        party.connection.webhook_secret = "whsec_" + party.key
        party.connection.save()
    agent = agent_in_flight(owner)
    later = timezone.now() + timedelta(hours=1)  # the poller leaves it alone
    Agent.objects.filter(pk=agent.pk).update(next_poll_at=later)
    stack.start_worker("poller")
    owner.advance(60)
    with BithumanClient(
        base_url=owner.connection.base_url, api_secret=owner.connection.api_secret
    ) as client:
        stale = client.agent_status_get(agent_id=agent.code)  # an answer that will arrive late
    assert stale.status != "ready"
    owner.advance(120)  # bitHuman has finished

    hostile = {
        "forged": _post_delivery(
            live_server, owner, code=agent.code, delivery_id="evt_1", secret="whsec_forged"
        ),
        "replayed late": _post_delivery(
            live_server,
            owner,
            code=agent.code,
            delivery_id="evt_2",
            timestamp=int(time.time()) - 600,
        ),
    }
    for name, response in hostile.items():
        assert response.status_code == 400, (name, response.text)
    foreign = _post_delivery(live_server, stranger, code=agent.code, delivery_id="evt_3")
    assert foreign.status_code == 200  # genuine for the stranger, but not about their agent
    assert fresh(agent).next_poll_at == later and fresh(agent).status == AgentStatus.PROCESSING
    assert not WebhookDelivery.objects.filter(organization=owner.org).exists()

    genuine = _post_delivery(live_server, owner, code=agent.code, delivery_id="evt_4")
    assert genuine.status_code == 200 and genuine.json()["duplicate"] is False
    stack.wait(lambda: fresh(agent).status == AgentStatus.READY, timeout=15)
    changes = AgentStatusChange.objects.filter(agent=agent).count()
    duplicates = [
        _post_delivery(live_server, owner, code=agent.code, delivery_id="evt_4") for _ in range(3)
    ]
    assert all(r.status_code == 200 and r.json()["duplicate"] for r in duplicates)
    assert WebhookDelivery.objects.filter(organization=owner.org).count() == 1
    assert not statuses.agent_status_apply(agent=agent, status=stale, source=StatusSource.POLL)
    time.sleep(1)  # a few ticks
    assert fresh(agent).status == AgentStatus.READY and fresh(agent).progress == 1.0
    assert AgentStatusChange.objects.filter(agent=agent).count() == changes
    figures.faults = len(hostile) + 1 + len(duplicates) + 1  # + foreign + stale answer
    figures.messages = 4 + len(duplicates)
    _finish(figures, [agent])


# --- 8. SIGTERM during work ---------------------------------------------------------------------


@pytest.mark.fault_case("8 SIGTERM mid-tick")
def test_sigterm_mid_tick_finishes_or_releases_and_nothing_stays_stuck(
    sandbox: Upstream, stack: Stack, figures: Figures
):
    owner = tenant(time_scale=10, latency_ms=600)  # each answer takes 0.6 s
    worker = stack.start_worker("deployed")
    agents = [agent_in_flight(owner) for _ in range(6)]  # their clocks start now
    stack.wait(lambda: len(sandbox.statuses(owner.key)) >= 6, timeout=20)
    count = len(sandbox.statuses(owner.key))
    stack.wait(lambda: len(sandbox.statuses(owner.key)) > count, timeout=10)  # mid-request
    worker.terminate()
    figures.faults += 1
    worker.process.wait(30)
    assert "warm shutdown" in worker.log_text().lower()
    held = Agent.objects.filter(pk__in=[a.pk for a in agents], lease_until__gt=timezone.now())
    assert not held.exists(), "the stopped worker left live leases"
    owner.configure(latency_ms=0)
    stack.start_worker("next")
    stack.wait(lambda: _ready(agents), timeout=30)
    figures.messages = len(sandbox.statuses(owner.key))
    _finish(figures, agents)


# --- 9. Key rotation while the poller runs ------------------------------------------------------


def _raw_tokens() -> list[str]:
    tokens: list[str] = []
    for model in apps.get_models():
        fields = [f for f in model._meta.fields if isinstance(f, crypto.EncryptedTextField)]
        if not fields:
            continue
        columns = ", ".join(db_connection.ops.quote_name(str(f.column)) for f in fields)
        table = db_connection.ops.quote_name(model._meta.db_table)
        with db_connection.cursor() as cursor:
            cursor.execute(f"SELECT {columns} FROM {table}")  # noqa: S608
            tokens += [token for row in cursor.fetchall() for token in row if token]
    return tokens


@pytest.mark.fault_case("9 key rotation under poller")
def test_key_rotation_while_polling_fails_no_call_and_leaves_nothing_under_the_old_key(
    sandbox: Upstream, stack: Stack, figures: Figures, settings: Any
):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    # 30 s: still generating when the third worker (each takes seconds to start) takes over.
    owners = [tenant(time_scale=3), tenant(time_scale=3)]
    agents = [agent_in_flight(owner) for owner in owners for _ in range(3)]
    phases: list[tuple[str, float]] = []

    def phase(name: str, keys: list[str]) -> Any:
        worker = stack.start_worker(name, env={"FIELD_ENCRYPTION_KEYS": ",".join(keys)})
        started = time.time()
        phases.append((name, started))
        stack.wait(
            lambda: [s for s in sandbox.statuses() if s.at > started + 0.5], timeout=20
        )  # this worker polls
        return worker

    before = phase("old-key", [old_key])
    during = phase("both-keys", [new_key, old_key])  # the rolling deploy: new key first
    before.shutdown()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    call_command("encryption_rotate", stdout=io.StringIO())
    phase("new-key", [new_key])  # the old key is dropped
    during.shutdown()
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    stack.wait(lambda: _ready(agents), timeout=40)

    tokens = _raw_tokens()
    assert tokens
    for token in tokens:
        Fernet(new_key.encode()).decrypt(token.encode())
        with pytest.raises(InvalidToken):
            Fernet(old_key.encode()).decrypt(token.encode())
    assert "Poller tick:" in stack.workers[-1].log_text()  # the new-key worker polled
    for worker in stack.workers:
        log = worker.log_text()
        assert "Traceback" not in log and "cannot be decrypted" not in log, log[-3000:]
    assert not Agent.objects.filter(consecutive_errors__gt=0).exists()
    figures.faults = 2  # two restarts with a changed key set, one re-encryption under load
    figures.messages = len(sandbox.statuses())
    figures.notes.append(f"{len(tokens)} stored secrets, all under the new key")
    _finish(figures, agents)
