"""Retries against the sandbox's real faults: forced 429s with Retry-After and injected 503s.

The client's `sleep` is injected: it records the delay the client asked for instead of sleeping,
and can flip a sandbox knob (through the unrecorded control API) to end a fault mid-way.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from portal.bithuman import AgentStatus, BithumanClient, RateLimitedError, UpstreamError, aio
from portal.bithuman.core import BACKOFF_BASE_SECONDS
from tests.conformance.conftest import Harness, Tenant
from tests.conformance.contract import Exchange
from tests.conformance.test_client_sandbox import agent_ready


class ScriptedSleep:
    """Records requested delays; runs `actions[n]` on the n-th sleep (1-based)."""

    def __init__(self, actions: dict[int, Callable[[], object]] | None = None):
        self.delays: list[float] = []
        self.actions = actions or {}

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        action = self.actions.get(len(self.delays))
        if action is not None:
            action()


def retry_afters(exchanges: list[Exchange]) -> list[float]:
    """The Retry-After of every refused exchange, in order."""
    return [float(e.response_headers["Retry-After"]) for e in exchanges if e.status == 429]


def test_forced_429s_are_retried_after_retry_after_then_raised(harness: Harness, settings):
    settings.SANDBOX_FORCED_RETRY_AFTER = 3
    tenant = harness.tenant(force_429_rate=1.0)
    sleep = ScriptedSleep()
    client = harness.client(tenant, sleep=sleep, max_retries=3, max_total_sleep=10)
    with pytest.raises(RateLimitedError) as caught:
        client.account_get()
    assert (caught.value.code, caught.value.http_status) == ("RATE_LIMITED", 429)
    assert caught.value.retry_after == 3.0
    assert [e.status for e in harness.exchanges] == [429] * 4  # 1 try + 3 retries
    # Each wait is exactly what the preceding answer asked for.
    assert sleep.delays == retry_afters(harness.exchanges)[:3] == [3.0, 3.0, 3.0]


def test_forced_429s_for_a_short_while_then_success(harness: Harness, settings):
    settings.SANDBOX_FORCED_RETRY_AFTER = 2
    tenant = harness.tenant(force_429_rate=1.0)
    sleep = ScriptedSleep({2: lambda: tenant.configure(force_429_rate=0.0)})
    client = harness.client(tenant, sleep=sleep, max_retries=3)
    assert client.account_get().credit_balance == 10_000
    assert [e.status for e in harness.exchanges] == [429, 429, 200]
    assert sleep.delays == retry_afters(harness.exchanges) == [2.0, 2.0]


def test_retry_after_beyond_the_sleep_budget_is_raised_not_waited(harness: Harness, settings):
    settings.SANDBOX_FORCED_RETRY_AFTER = 4
    tenant = harness.tenant(force_429_rate=1.0)
    sleep = ScriptedSleep()
    client = harness.client(tenant, sleep=sleep, max_retries=5, max_total_sleep=10)
    with pytest.raises(RateLimitedError) as caught:
        client.pricing_get()
    assert caught.value.retry_after == 4.0  # for a task to reschedule itself
    assert sleep.delays == [4.0, 4.0]  # a third wait would pass the 10 s budget
    assert len(harness.exchanges) == 3


def test_a_speak_refused_with_429_is_retried_and_said_once(harness: Harness, settings):
    settings.SANDBOX_FORCED_RETRY_AFTER = 1
    tenant = harness.tenant()
    setup = harness.client(tenant)
    code = agent_ready(setup, tenant)
    setup.runtime_token_request(agent_code=code, room_name="live")
    tenant.configure(force_429_rate=1.0)
    sleep = ScriptedSleep({1: lambda: tenant.configure(force_429_rate=0.0)})
    client = harness.client(tenant, sleep=sleep)
    assert client.agent_speak(code=code, message="Only once").delivered_to_rooms == 1
    assert sleep.delays == [1.0]
    [room] = tenant.control.get("/control/rooms").json()["rooms"]
    assert room["messages"] == [{"type": "speak", "text": "Only once"}]


def test_503_is_retried_with_backoff_then_succeeds_when_the_fault_ends(harness: Harness):
    tenant = harness.tenant(error_rate=1.0)
    sleep = ScriptedSleep({2: lambda: tenant.configure(error_rate=0.0)})
    client = harness.client(tenant, sleep=sleep, max_retries=3)
    started = client.agent_generate(prompt="A friendly coach", idempotency_key="job-7")
    assert [e.status for e in harness.exchanges] == [503, 503, 200]
    refused = harness.exchanges[0]
    assert refused.json()["error"]["code"] == "NO_AVAILABLE_WORKERS"
    # The sandbox's 503 names no Retry-After, so the client backs off exponentially with jitter.
    assert "Retry-After" not in refused.response_headers
    for attempt, delay in enumerate(sleep.delays):
        ceiling = BACKOFF_BASE_SECONDS * 2**attempt
        assert ceiling / 2 <= delay <= ceiling
    # Every attempt carried the same key, so a retry can never start a second billed job.
    assert {e.request_headers["Idempotency-Key"] for e in harness.exchanges} == {"job-7"}
    assert [a.code for a in client.agent_list().agents] == [started.agent_id]


def test_503_on_a_non_replayable_call_is_retried(harness: Harness):
    # 503 NO_AVAILABLE_WORKERS means the request was not taken on: even speak may be sent again.
    tenant = harness.tenant()
    setup = harness.client(tenant)
    code = agent_ready(setup, tenant)
    setup.runtime_token_request(agent_code=code, room_name="live")
    tenant.configure(error_rate=1.0)
    sleep = ScriptedSleep({1: lambda: tenant.configure(error_rate=0.0)})
    client = harness.client(tenant, sleep=sleep)
    assert client.agent_context_add(code=code, context="A fact").delivered_to_rooms == 1
    assert len(sleep.delays) == 1
    [room] = tenant.control.get("/control/rooms").json()["rooms"]
    assert room["messages"] == [{"type": "add_context", "text": "A fact"}]


def test_503_until_retries_run_out(harness: Harness):
    tenant = harness.tenant(error_rate=1.0)
    sleep = ScriptedSleep()
    client = harness.client(tenant, sleep=sleep, max_retries=3)
    with pytest.raises(UpstreamError) as caught:
        client.agent_status_get(agent_id="A00ZZZ0000")
    assert (caught.value.code, caught.value.http_status) == ("NO_AVAILABLE_WORKERS", 503)
    assert [e.status for e in harness.exchanges] == [503] * 4
    assert len(sleep.delays) == 3


def test_async_client_honours_retry_after(
    harness: Harness, settings, client: BithumanClient, tenant: Tenant
):
    settings.SANDBOX_FORCED_RETRY_AFTER = 2
    code = client.agent_generate(prompt="A friendly coach").agent_id
    tenant.configure(force_429_rate=1.0)

    async def fetch() -> AgentStatus | RateLimitedError:
        async with harness.async_client(tenant, max_retries=2) as async_client:
            try:
                return await async_client.agent_status_get(agent_id=code)
            except RateLimitedError as error:
                return error

    result = aio.run(fetch())
    assert isinstance(result, RateLimitedError)
    assert result.retry_after == 2.0
    assert harness.sleeps == [2.0, 2.0]

    tenant.configure(force_429_rate=0.0)
    assert isinstance(aio.run(fetch()), AgentStatus)
