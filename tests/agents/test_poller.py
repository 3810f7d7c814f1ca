"""The status poller against the sandbox over real HTTP (pytest-django's live server).

Every bitHuman request the poller sends is seen by the sandbox and counted here (per account,
path and arrival time), so the tests check what actually went over the wire: nothing polled
twice, nothing sent to a deferred account, never more reads than the plan allows.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agents import poller, ratelimit, services, statuses, tasks
from agents.models import Agent, AgentQuerySet, AgentStatus, AgentStatusChange, StatusSource
from organizations import connections
from portal.bithuman import webhooks
from portal.bithuman.client import BithumanClient
from portal.models import BithumanConnection, Organization, WebhookDelivery
from portal.tenancy import Role
from sandbox import http as sandbox_http
from sandbox import schemas as sandbox_schemas
from sandbox import services as sandbox_services
from sandbox import webhooks as sandbox_webhooks
from sandbox.errors import SandboxError
from sandbox.models import SandboxAccount
from tests.factories import MembershipFactory

integration = pytest.mark.django_db(transaction=True)


def wait_for(condition: Callable[[], Any], *, timeout: float, step: float = 0.05) -> Any:
    """Poll `condition` until it is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)


# --- What reached the sandbox -------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    key: str  # ratelimit.account_key of the secret that sent it
    method: str
    path: str
    at: float  # time.time() on arrival


@dataclass
class Upstream:
    """Every request that reached the sandbox's API, and every 429 its own buckets answered."""

    requests: list[Seen] = field(default_factory=list)
    bucket_429s: list[str] = field(default_factory=list)

    def of(self, key: str, *, path_part: str = "") -> list[Seen]:
        return [seen for seen in list(self.requests) if seen.key == key and path_part in seen.path]

    def statuses(self, key: str | None = None, code: str = "") -> list[Seen]:
        return [
            seen
            for seen in list(self.requests)
            if "/v1/agent/status/" in seen.path
            and (key is None or seen.key == key)
            and seen.path.endswith("/" + code if code else "")
        ]


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Upstream:
    seen = Upstream()
    authenticate = sandbox_http.account_authenticate
    consume = sandbox_services.rate_limit_consume

    def counting_authenticate(request: Any) -> SandboxAccount:
        secret = request.headers.get("api-secret", "")
        seen.requests.append(
            Seen(ratelimit.account_key(secret), request.method, request.path, time.time())
        )
        return authenticate(request)

    def counting_consume(*, account: SandboxAccount, bucket: str) -> Any:
        try:
            return consume(account=account, bucket=bucket)
        except SandboxError as error:
            if error.status == 429:
                seen.bucket_429s.append(bucket)
            raise

    # The live server runs in a thread of this process and looks both up at call time.
    monkeypatch.setattr(sandbox_http, "account_authenticate", counting_authenticate)
    monkeypatch.setattr(sandbox_services, "rate_limit_consume", counting_consume)
    return seen


@pytest.fixture
def sandbox(live_server: Any, settings: Any, upstream: Upstream) -> Upstream:
    """Organizations in Test mode reach the sandbox over HTTP; the poller runs on a short clock."""
    settings.SANDBOX_BASE_URL = live_server.url + "/sandbox"
    settings.AGENT_POLL_INTERVAL = 0.05
    settings.AGENT_POLL_MAX_INTERVAL = 0.4
    settings.AGENT_POLL_LEASE = 8.0
    settings.AGENT_POLL_BATCH = 50
    settings.AGENT_POLL_CONCURRENCY = 8
    return upstream


# --- Organizations, their sandbox accounts, agents ----------------------------------------------


@dataclass
class Tenant:
    org: Organization
    connection: BithumanConnection
    account: SandboxAccount
    key: str

    def configure(self, **changes: Any) -> None:
        sandbox_services.sandbox_account_configure(account=self.account, changes=changes)

    def advance(self, seconds: float) -> None:
        sandbox_services.sandbox_clock_advance(account=self.account, seconds=seconds)


def tenant(*, plan: str = "pro", time_scale: float = 0.0, **knobs: Any) -> Tenant:
    """An organization in Test mode; its sandbox account's clock is frozen unless told."""
    org = MembershipFactory(role=Role.OWNER).organization
    connection = connections.connection_get(org=org)
    account = sandbox_services.sandbox_account_for_secret(secret=connection.api_secret)
    assert account is not None
    result = Tenant(org, connection, account, ratelimit.account_key(connection.api_secret))
    result.configure(plan=plan, time_scale=time_scale, credits=10**7, **knobs)
    return result


def agent_in_flight(owner: Tenant, *, model: str = "expression-1", age: float = 0.0) -> Agent:
    """An agent bitHuman is generating (started with the sandbox's own generate), due now."""
    answer = sandbox_services.agent_generate(
        account=owner.account,
        data=sandbox_schemas.generate_in({"prompt": "A friendly coach", "model": model}),
        idempotency_key=None,
    )
    now = timezone.now()
    return Agent.objects.create(
        organization=owner.org,
        name="Coach",
        model=model,
        code=json.loads(answer.body)["agent_id"],
        status=AgentStatus.PROCESSING,
        submitted_at=now - timedelta(seconds=age),
        next_poll_at=now,
    )


def fresh(agent: Agent) -> Agent:
    return Agent.objects.get(pk=agent.pk)


def ticks_until(condition: Callable[[], Any], *, timeout: float = 10.0) -> Any:
    def tick_and_check() -> Any:
        poller.tick()
        return condition()

    return wait_for(tick_and_check, timeout=timeout)


# --- The walk to ready --------------------------------------------------------------------------


@integration
def test_completed_and_success_never_end_polling_only_ready_does(sandbox: Upstream):
    owner = tenant()
    agent = agent_in_flight(owner)
    seen_statuses = []
    # 4 %, 23 %, 41 % of expression-1's 90 s: `completed`, then `success` twice; then the end.
    for seconds, expected in ((3.6, "completed"), (17.1, "success"), (16.2, "success")):
        owner.advance(seconds)
        Agent.objects.filter(pk=agent.pk).update(next_poll_at=timezone.now())
        poller.tick()
        agent = fresh(agent)
        assert agent.status == expected
        assert agent.next_poll_at is not None and agent.lease_until is None  # still polled
        seen_statuses.append(agent.status)
    owner.advance(100)
    ticks_until(lambda: fresh(agent).status == AgentStatus.READY, timeout=5)
    agent = fresh(agent)
    assert agent.progress == 1.0 and agent.current_step == "done"
    assert agent.next_poll_at is None and agent.lease_until is None
    requests = len(sandbox.statuses(owner.key))
    poller.tick()
    poller.tick()
    assert len(sandbox.statuses(owner.key)) == requests  # ready ended polling
    history = list(agent.status_changes.values_list("to_status", "source"))
    assert ("completed", StatusSource.POLL) in history
    assert history[-1] == ("ready", StatusSource.POLL)


@integration
def test_submitted_agent_reaches_ready_through_ticks_alone(sandbox: Upstream):
    owner = tenant(time_scale=60)  # expression-1's 90 s in 1.5 s
    agent = Agent.objects.create(
        organization=owner.org, name="Coach", system_prompt="A friendly coach"
    )
    services.agent_submit(agent_pk=agent.pk)  # the generate request, over HTTP
    assert fresh(agent).status == AgentStatus.PROCESSING
    ticks_until(lambda: fresh(agent).status == AgentStatus.READY, timeout=8)
    statuses = list(agent.status_changes.values_list("to_status", flat=True))
    assert statuses[0] == "processing" and statuses[-1] == "ready"
    assert len(statuses) >= 3  # intermediate answers were recorded on the way


# --- Claims, leases, concurrency ----------------------------------------------------------------


@integration
def test_two_ticks_at_once_never_poll_the_same_agent(sandbox: Upstream, settings: Any):
    settings.AGENT_POLL_INTERVAL = 60  # an answered agent is not due again during this test
    settings.AGENT_POLL_BATCH = 3
    settings.AGENT_POLL_CONCURRENCY = 2
    owner = tenant(latency_ms=30)  # each batch takes a while, so the two ticks interleave
    agents = [agent_in_flight(owner) for _ in range(18)]
    start = threading.Barrier(2)
    reports: list[poller.PollReport] = []

    def run() -> None:
        try:
            start.wait()
            reports.append(poller.tick())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    polled = [seen.path.rsplit("/", 1)[-1] for seen in sandbox.statuses(owner.key)]
    assert sorted(polled) == sorted(agent.code for agent in agents)  # each exactly once
    assert len(reports) == 2 and all(report.requested > 0 for report in reports)  # both worked
    assert not Agent.objects.filter(lease_until__isnull=False).exists()  # every lease released


@integration
def test_a_claim_skips_rows_another_uncommitted_claim_holds(
    sandbox: Upstream, monkeypatch: pytest.MonkeyPatch
):
    owner = tenant()
    agents = [agent_in_flight(owner) for _ in range(6)]
    locked, resume = threading.Event(), threading.Event()
    update = AgentQuerySet.update

    def pausing_update(self: AgentQuerySet, **fields: Any) -> int:
        # Claimer A stops between its SELECT ... FOR UPDATE and its commit.
        if threading.current_thread().name == "claimer-a" and fields.get("lease_until"):
            locked.set()
            resume.wait(10)
        return update(self, **fields)

    monkeypatch.setattr(AgentQuerySet, "update", pausing_update)
    claimed_by_a: list[statuses.Batch | None] = []

    def claim_a() -> None:
        try:
            claimed_by_a.append(statuses.agents_claim(limit=3))
        finally:
            connection.close()

    thread = threading.Thread(target=claim_a, name="claimer-a")
    thread.start()
    assert locked.wait(5)
    started = time.monotonic()
    batch_b = statuses.agents_claim(limit=10)  # while A's rows are locked and not yet leased
    waited = time.monotonic() - started
    resume.set()
    thread.join(10)
    batch_a = claimed_by_a[0]
    assert batch_a is not None and batch_b is not None
    assert waited < 2  # skipped A's rows rather than waiting for them
    pks_a = {agent.pk for agent in batch_a.agents}
    pks_b = {agent.pk for agent in batch_b.agents}
    assert len(pks_a) == 3 and pks_a.isdisjoint(pks_b)
    assert pks_a | pks_b == {agent.pk for agent in agents}


@integration
def test_leases_of_a_tick_that_died_after_claiming_expire_then_agents_are_polled(
    sandbox: Upstream, settings: Any
):
    settings.AGENT_POLL_LEASE = 1.5
    owner = tenant()
    agents = [agent_in_flight(owner) for _ in range(3)]
    # A tick claimed (and committed) these, then its worker died before any request.
    batch = statuses.agents_claim(limit=10)
    assert batch is not None and len(batch.agents) == 3
    assert poller.tick().claimed == 0  # leased: nobody else takes them...
    assert sandbox.statuses(owner.key) == []
    assert all(fresh(agent).lease_until == batch.lease for agent in agents)
    # ...until the lease ends; then they are due again and polled, once each.
    ticks_until(lambda: len(sandbox.statuses(owner.key)) == 3, timeout=6)
    assert all(seen.at >= batch.lease.timestamp() for seen in sandbox.statuses(owner.key))
    assert all(fresh(agent).lease_until is None for agent in agents)
    assert all(fresh(agent).progress > 0 for agent in agents)


@integration
def test_a_tick_releases_only_its_own_leases(sandbox: Upstream):
    owner = tenant()
    agent = agent_in_flight(owner)
    batch = statuses.agents_claim(limit=1)
    assert batch is not None
    # The lease expired and another tick claimed the agent meanwhile: its lease is not ours.
    other_lease = timezone.now() + timedelta(seconds=30)
    Agent.objects.filter(pk=agent.pk).update(lease_until=other_lease)
    poller._release(agent=agent, batch=batch, next_poll_at=timezone.now())
    assert fresh(agent).lease_until == other_lease


@integration
def test_a_tick_queues_one_drain_per_batch_of_due_agents_up_to_the_fanout(
    sandbox: Upstream, settings: Any
):
    settings.AGENT_POLL_BATCH = 2
    settings.AGENT_POLL_FANOUT = 3
    settings.AGENT_POLL_INTERVAL = 60  # a polled agent is not due again during this test
    owner = tenant()
    assert poller.drains_wanted() == 0
    agents = [agent_in_flight(owner) for _ in range(3)]
    assert poller.drains_wanted() == 2  # 3 due agents: two batches
    agents += [agent_in_flight(owner) for _ in range(4)]
    assert poller.drains_wanted() == 3  # 7 due: four batches, capped at the fan-out
    leased = statuses.agents_claim(limit=6)
    assert leased is not None
    assert poller.drains_wanted() == 1  # leased agents are not due
    statuses.agent_leases_release(
        lease=leased.lease,
        releases=[statuses.LeaseRelease(a.pk, timezone.now()) for a in leased.agents],
    )

    # Eager here, so the queued drains run in turn: the first polls everything, once.
    assert tasks.agents_poll_tick() == 3
    polled = sorted(seen.path.rsplit("/", 1)[-1] for seen in sandbox.statuses(owner.key))
    assert polled == sorted(agent.code for agent in agents)
    assert poller.drains_wanted() == 0
    assert tasks.agents_poll_tick() == 0  # nothing due: nothing queued, nothing sent
    assert len(sandbox.statuses(owner.key)) == len(agents)


def test_a_queued_drain_expires_before_the_tick_after_next():
    tick = float(django_settings.AGENT_POLL_TICK)
    assert tick < poller.drain_expires_seconds() <= 2 * tick + 1.0


# --- Rate limits --------------------------------------------------------------------------------


@integration
def test_429_defers_only_that_account_and_nothing_is_sent_before_retry_after(
    sandbox: Upstream, settings: Any
):
    settings.SANDBOX_FORCED_RETRY_AFTER = 2
    settings.AGENT_POLL_CONCURRENCY = 1  # a second request of the account would follow the 429
    limited, other = tenant(force_429_rate=1.0), tenant()
    limited_agents = [agent_in_flight(limited) for _ in range(3)]
    other_agents = [agent_in_flight(other) for _ in range(2)]

    poller.tick()
    first = sandbox.of(limited.key)
    assert len(first) == 1  # the 429 stopped the rest of that account's requests
    assert len(sandbox.statuses(other.key)) == 2  # the other account was polled as usual
    limited.configure(force_429_rate=0.0)

    ticks_until(lambda: len(sandbox.of(limited.key)) > 1, timeout=6)
    retried = sandbox.of(limited.key)[1]
    assert retried.at - first[0].at >= 1.95  # nothing was sent before Retry-After passed
    # Meanwhile the other account kept being polled, and no agent counted an error.
    assert any(first[0].at < seen.at < retried.at for seen in sandbox.statuses(other.key))
    for agent in limited_agents + other_agents:
        agent = fresh(agent)
        assert agent.status != AgentStatus.FAILED and agent.consecutive_errors == 0


@integration
def test_reads_never_exceed_the_plans_read_limit(sandbox: Upstream, settings: Any):
    settings.AGENT_POLL_READ_SHARE = 1.0  # the whole Free budget: 120 reads a minute, burst 30
    settings.AGENT_POLL_BATCH = 200
    settings.AGENT_POLL_CONCURRENCY = 16
    owner = tenant(plan="free")
    for _ in range(130):
        agent_in_flight(owner)
    started = time.time()
    poller.tick()
    assert len(sandbox.of(owner.key)) == 30  # the burst: GET /v1/me and 29 statuses
    for _ in range(15):
        poller.tick()
        time.sleep(0.1)
    elapsed = time.time() - started
    reads = len(sandbox.of(owner.key))
    assert reads <= 30 + 2 * elapsed + 1  # burst plus the refill (2 a second on Free)
    assert reads > 30  # and the refill is used
    assert sandbox.bucket_429s == []  # the sandbox's own bucket never had to refuse one
    assert not Agent.objects.filter(status=AgentStatus.FAILED).exists()


@integration
def test_plan_is_learned_once_from_v1_me_and_sets_the_budget(sandbox: Upstream, settings: Any):
    settings.AGENT_POLL_READ_SHARE = 0.5
    owner = tenant(plan="business")
    agent_in_flight(owner)
    assert ratelimit.read_limit(key=owner.key) == 60  # Free until known (120 x 0.5)
    poller.tick()
    assert ratelimit.read_limit(key=owner.key) == 720  # Business: 1440 x 0.5
    Agent.objects.update(next_poll_at=timezone.now())
    poller.tick()
    assert len(sandbox.of(owner.key, path_part="/v1/me")) == 1


@pytest.mark.parametrize("backend", ["redis", "locmem"])
@integration
def test_bucket_grants_no_more_than_capacity_across_threads(settings: Any, backend: str):
    if backend == "locmem":  # the fallback: cache state under a database lock
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    else:
        assert ratelimit._redis() is not None, "these tests run with REDIS_URL set"
    key = ratelimit.account_key(f"secret-{backend}")
    granted: list[int] = []

    def take() -> None:
        try:
            for _ in range(5):
                granted.append(ratelimit.tokens_take(key=key, wanted=3, per_minute=60))
        finally:
            connection.close()

    threads = [threading.Thread(target=take) for _ in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    refill = (time.monotonic() - started) * 1.0  # 60 a minute
    capacity = ratelimit.bucket_capacity(60)
    assert capacity == 15
    assert capacity <= sum(granted) <= capacity + refill + 1
    assert ratelimit.account_defer(key=key, seconds=2) == pytest.approx(2, abs=0.1)
    assert ratelimit.account_defer(key=key, seconds=0.5) == pytest.approx(2, abs=0.1)  # kept
    assert ratelimit.account_deferral_remaining(key=key) > 1.5


@integration
def test_accounts_are_named_by_a_hash_never_the_secret(sandbox: Upstream):
    owner = tenant()
    agent_in_flight(owner)
    poller.tick()
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    keys = [key.decode() for key in client.keys("*")]
    secret = owner.connection.api_secret
    assert any(owner.key in key for key in keys)
    assert not any(secret in key or secret[4:20] in key for key in keys)
    for key in keys:
        value = client.dump(key) or b""
        assert secret.encode() not in value


# --- Webhooks, stale answers --------------------------------------------------------------------


def subscribe(owner: Tenant, live_server: Any) -> None:
    """Register the organization's receiver with its sandbox account, as Live mode does."""
    url = live_server.url + reverse("bithuman_webhook", args=[owner.connection.receiver_token])
    webhook = sandbox_webhooks.webhook_create(
        account=owner.account,
        data=sandbox_schemas.webhook_in({"url": url, "events": ["agent.ready", "agent.failed"]}),
    )
    owner.connection.webhook_id = str(webhook.id)
    owner.connection.webhook_secret = webhook.secret
    owner.connection.save()


def deliver(sender: Tenant, *, code: str, event: str = "agent.ready") -> None:
    """A signed delivery posted to `sender`'s receiver (what bitHuman sends)."""
    sender.connection.webhook_secret = "whsec_" + sender.key
    sender.connection.save()
    raw = json.dumps(
        {"id": f"evt_{code}", "event": event, "created": int(time.time()), "data": {"code": code}}
    ).encode()
    response = Client().post(
        reverse("bithuman_webhook", args=[sender.connection.receiver_token]),
        data=raw,
        content_type="application/json",
        headers=webhooks.delivery_headers_build(
            secret=sender.connection.webhook_secret,
            raw_body=raw,
            event=event,
            delivery_id=f"evt_{code}",
        ),
    )
    assert response.status_code == 200, response.content
    assert WebhookDelivery.objects.get(organization=sender.org).processed_at is not None


@integration
def test_webhook_refreshes_at_once_and_a_stale_answer_then_changes_nothing(
    sandbox: Upstream, live_server: Any, settings: Any
):
    settings.SANDBOX_WEBHOOK_ALLOW_LOCAL = True
    owner = tenant()
    subscribe(owner, live_server)
    agent = agent_in_flight(owner)
    Agent.objects.filter(pk=agent.pk).update(next_poll_at=timezone.now() + timedelta(hours=1))
    owner.advance(60)  # lip sync, ~0.8
    with BithumanClient(
        base_url=owner.connection.base_url, api_secret=owner.connection.api_secret
    ) as client:
        stale = client.agent_status_get(agent_id=agent.code)  # an answer still on its way
    assert stale.status == "generating"
    owner.advance(60)

    # bitHuman finishes and sends agent.ready to our receiver, which refreshes the agent at once
    # (its next poll was an hour away).
    sandbox_services.agents_advance()
    agent = fresh(agent)
    assert agent.status == AgentStatus.READY
    assert WebhookDelivery.objects.get(organization=owner.org).processed_at is not None
    changes = AgentStatusChange.objects.filter(agent=agent).count()

    assert not statuses.agent_status_apply(agent=agent, status=stale, source=StatusSource.POLL)
    agent = fresh(agent)
    assert agent.status == AgentStatus.READY and agent.progress == 1.0
    assert AgentStatusChange.objects.filter(agent=agent).count() == changes


@integration
def test_webhook_only_reaches_agents_of_its_own_organization(sandbox: Upstream):
    owner, stranger = tenant(), tenant()
    agent = agent_in_flight(owner)
    later = timezone.now() + timedelta(hours=1)
    Agent.objects.filter(pk=agent.pk).update(next_poll_at=later)
    deliver(stranger, code=agent.code)  # another organization's delivery names our agent's code
    assert fresh(agent).next_poll_at == later
    assert sandbox.statuses() == []
    deliver(owner, code=agent.code)  # our own: polled at once
    assert len(sandbox.statuses(owner.key, code=agent.code)) == 1


@integration
def test_webhook_for_an_agent_a_tick_holds_is_polled_by_the_next_tick(sandbox: Upstream):
    owner = tenant()
    agent = agent_in_flight(owner)
    batch = statuses.agents_claim(limit=1)  # a tick is fetching it right now
    assert batch is not None
    deliver(owner, code=agent.code)
    assert sandbox.statuses() == []  # the one-agent poll left it to the tick
    poller._release(agent=agent, batch=batch, next_poll_at=timezone.now() + timedelta(hours=1))
    assert fresh(agent).next_poll_at <= timezone.now()  # the webhook's "now" survived
    poller.tick()
    assert len(sandbox.statuses(owner.key)) == 1


@integration
def test_webhook_during_a_tick_is_polled_again_by_that_tick(
    sandbox: Upstream, monkeypatch: pytest.MonkeyPatch
):
    owner = tenant()
    agent = agent_in_flight(owner)
    other = agent_in_flight(owner)
    fetch = poller._statuses_fetch
    webhooks_sent: list[int] = []

    def fetch_then_webhook(plan: Any) -> Any:
        answers = fetch(plan)
        if not webhooks_sent:  # agent.ready arrives while the tick holds the agent
            webhooks_sent.append(agent.pk)
            services.agent_refresh_now(agent=fresh(agent))
        return answers

    monkeypatch.setattr(poller, "_statuses_fetch", fetch_then_webhook)
    report = poller.tick()
    assert len(sandbox.statuses(owner.key, code=agent.code)) == 2  # at once, not a tick later
    assert len(sandbox.statuses(owner.key, code=other.code)) == 1
    assert report.requested == 3
    assert not Agent.objects.filter(lease_until__isnull=False).exists()
    assert fresh(agent).next_poll_at > timezone.now()  # polled: scheduled again


# --- Errors and the deadline --------------------------------------------------------------------


@integration
def test_transient_5xx_never_fails_an_agent(sandbox: Upstream):
    owner = tenant(error_rate=1.0)  # every request: 503 NO_AVAILABLE_WORKERS
    agent = agent_in_flight(owner)
    ticks_until(lambda: fresh(agent).consecutive_errors >= 3, timeout=8)
    agent = fresh(agent)
    assert agent.status == AgentStatus.PROCESSING and agent.error_message == ""
    owner.configure(error_rate=0.0)
    ticks_until(lambda: fresh(agent).consecutive_errors == 0, timeout=8)
    assert fresh(agent).progress > 0


@integration
def test_past_its_deadline_an_agent_is_overdue_not_failed_and_a_late_ready_counts(
    sandbox: Upstream, settings: Any
):
    settings.AGENT_DEADLINE_FACTOR = 6  # expression-1: 2 min typical, 12 min deadline
    settings.AGENT_POLL_MAX_INTERVAL = 60
    owner = tenant()
    too_old = agent_in_flight(owner, age=13 * 60)
    slow_but_fine = agent_in_flight(owner, age=10 * 60)
    started = timezone.now()
    poller.tick()
    too_old, slow_but_fine = fresh(too_old), fresh(slow_but_fine)
    assert too_old.status == AgentStatus.OVERDUE and too_old.error_message == ""
    assert "expression-1 usually takes about 2 minutes" in too_old.progress_message
    assert "may still finish" in too_old.progress_message
    # The slowest cadence, not the 5 s one.
    assert too_old.next_poll_at >= started + timedelta(seconds=59)
    assert slow_but_fine.status == AgentStatus.PROCESSING and slow_but_fine.next_poll_at
    history = list(
        AgentStatusChange.objects.filter(agent=too_old).values_list("to_status", flat=True)
    )
    assert history[-1] == AgentStatus.OVERDUE

    # An intermediate answer keeps it overdue (nothing moves backwards)...
    Agent.objects.filter(pk=too_old.pk).update(next_poll_at=timezone.now())
    owner.advance(30)
    poller.tick()
    assert fresh(too_old).status == AgentStatus.OVERDUE
    # ...and bitHuman finishing late still counts.
    Agent.objects.filter(pk=too_old.pk).update(next_poll_at=timezone.now())
    owner.advance(600)
    poller.tick()
    too_old = fresh(too_old)
    assert too_old.status == AgentStatus.READY and too_old.next_poll_at is None
    assert AgentStatusChange.objects.filter(
        agent=too_old, from_status=AgentStatus.OVERDUE, to_status=AgentStatus.READY
    ).exists()


@integration
def test_unchanged_answers_write_no_status_change(
    sandbox: Upstream, monkeypatch: pytest.MonkeyPatch
):
    owner = tenant()
    agent = agent_in_flight(owner)
    applied: list[bool] = []
    apply = statuses.agent_statuses_apply

    def spying_apply(**kwargs: Any) -> set[int]:
        changed = apply(**kwargs)
        applied.extend(agent.pk in changed for agent, _status in kwargs["answers"])
        return changed

    monkeypatch.setattr(statuses, "agent_statuses_apply", spying_apply)
    ticks_until(lambda: len(applied) >= 1, timeout=5)
    assert applied == [True]  # processing 0 -> the first real answer
    changes = AgentStatusChange.objects.filter(agent=agent).count()
    visible = ("status", "progress", "current_step", "updated_at")
    row = Agent.objects.filter(pk=agent.pk).values(*visible).get()
    ticks_until(lambda: len(applied) >= 4, timeout=5)
    assert applied[1:] == [False] * (len(applied) - 1)  # the same answer again: no write
    assert AgentStatusChange.objects.filter(agent=agent).count() == changes
    assert Agent.objects.filter(pk=agent.pk).values(*visible).get() == row  # updated_at too
    owner.advance(20)  # now something did change: exactly one more history row
    ticks_until(lambda: applied[-1], timeout=5)
    assert AgentStatusChange.objects.filter(agent=agent).count() == changes + 1
    assert Agent.objects.filter(pk=agent.pk).values(*visible).get() != row


# --- Cadence ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "minutes", "seconds"),
    [
        ("expression-1", 0, 5),
        ("expression-1", 10, 5),  # short models: always every 5 s
        ("essence-2", 1, 5),  # long models: every 5 s early on...
        ("essence-2", 20, 40),  # ...then every typical/60 (40 min / 60)
        ("expression-2", 30, 60),  # capped at AGENT_POLL_MAX_INTERVAL
    ],
)
def test_cadence_is_5_s_early_and_slower_later_for_long_models(
    settings: Any, model: str, minutes: int, seconds: float
):
    settings.AGENT_POLL_INTERVAL = 5
    settings.AGENT_POLL_MAX_INTERVAL = 60
    now = timezone.now()
    agent = Agent(model=model, submitted_at=now - timedelta(minutes=minutes))
    assert poller.cadence_seconds(agent=agent, now=now) == seconds


def test_an_answered_agent_is_due_one_interval_later_and_beat_ticks_more_often(settings: Any):
    settings.AGENT_POLL_INTERVAL = 5
    started = timezone.now()
    agent = Agent(model="expression-1", submitted_at=started)
    now = started + timedelta(seconds=1.5)
    # Never twice within one interval...
    assert poller.next_poll_after_answer(agent=agent, now=now) == now + timedelta(seconds=5)
    # ...and beat's ticks come every AGENT_POLL_TICK, so a due agent waits at most one of them.
    from django.conf import settings as live

    schedule = live.CELERY_BEAT_SCHEDULE["agents-poll"]
    assert schedule["schedule"].total_seconds() == live.AGENT_POLL_TICK <= live.AGENT_POLL_INTERVAL
    assert schedule["options"]["expires"] == live.AGENT_POLL_TICK


@pytest.mark.parametrize("backend", ["redis", "locmem"])
@pytest.mark.django_db
def test_reads_take_answers_every_account_of_a_batch_at_once(settings: Any, backend: str):
    if backend == "locmem":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    deferred, small, large = (ratelimit.account_key(f"{backend}-{n}") for n in range(3))
    ratelimit.account_defer(key=deferred, seconds=30)
    grants = ratelimit.reads_take(wants=[(deferred, 5, 60), (small, 50, 60), (large, 50, 2880)])
    assert grants[0].granted == 0 and grants[0].deferred_for == pytest.approx(30, abs=1)
    assert grants[1] == ratelimit.ReadGrant(granted=15)  # the bucket's burst: 60 // 4
    assert grants[2] == ratelimit.ReadGrant(granted=50)
    assert ratelimit.tokens_take(key=small, wanted=5, per_minute=60) <= 1  # the same bucket
    assert ratelimit.reads_take(wants=[]) == []
