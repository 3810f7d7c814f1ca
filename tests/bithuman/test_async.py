"""The asynchronous client, and many statuses at once over pooled connections (`aio.statuses_fetch`,
the poller's fetch)."""

import asyncio

import httpx
import pytest

from portal.bithuman import (
    AgentNotFoundError,
    AgentStatus,
    AsyncBithumanClient,
    RateLimitedError,
    UpstreamError,
    aio,
)
from portal.bithuman.aio import UNSENT, StatusAccount, StatusRequest
from tests.bithuman.conftest import BASE_URL, SECRET, envelope

STATUS_PATH = r"^/v1/agent/status/(?P<agent_id>[^/]+)$"


def async_client(*, sleeps: list[float] | None = None, **overrides) -> AsyncBithumanClient:
    recorded = [] if sleeps is None else sleeps

    async def sleep(seconds: float) -> None:
        recorded.append(seconds)

    options = {"base_url": BASE_URL, "api_secret": SECRET, "max_retries": 2, "sleep": sleep}
    return AsyncBithumanClient(**(options | overrides))


def status_answer(agent_id: str, status: str = "generating") -> httpx.Response:
    return httpx.Response(
        200, json={"success": True, "data": {"agent_id": agent_id, "status": status}}
    )


ACCOUNT = StatusAccount(key="one", base_url=BASE_URL, api_secret=SECRET)
OTHER = StatusAccount(key="two", base_url=BASE_URL, api_secret=SECRET[::-1])


def requests_for(agent_ids, account: StatusAccount = ACCOUNT) -> list[StatusRequest]:
    return [
        StatusRequest(key=(account.key, n), account=account, agent_id=agent_id)
        for n, agent_id in enumerate(agent_ids)
    ]


def fetch(requests, **options) -> aio.StatusesFetched:
    settings = {"concurrency": 4, "deadline": 5.0, "timeout": 5.0} | options
    return aio.run(aio.statuses_fetch(requests, **settings))


@pytest.mark.parametrize("concurrency", [1, 3])
def test_statuses_fetch_keeps_at_most_concurrency_requests_in_flight(api, concurrency):
    in_flight = 0
    peak = 0

    async def answer(request: httpx.Request, agent_id: str) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return status_answer(agent_id)

    api.get(path__regex=STATUS_PATH).mock(side_effect=answer)
    agent_ids = [f"A{n:02d}ABC1234" for n in range(10)]

    fetched = fetch(requests_for(agent_ids), concurrency=concurrency)

    # Equal, not just at most: the bound is reached, so the fetches really are concurrent.
    assert peak == concurrency
    assert [fetched.results[("one", n)].agent_id for n in range(10)] == agent_ids


def test_statuses_fetch_returns_a_result_or_an_error_per_request(api):
    def answer(request: httpx.Request, agent_id: str) -> httpx.Response:
        if agent_id == "A00MIS0000":
            return envelope(404, "NOT_FOUND", f"Agent not found for code: {agent_id}")
        if agent_id == "A00BRK0000":
            return envelope(500, "INTERNAL_ERROR", "boom")
        return status_answer(agent_id, status="ready")

    route = api.get(path__regex=STATUS_PATH).mock(side_effect=answer)

    fetched = fetch(requests_for(["A11AAA1111", "A00MIS0000", "A00BRK0000", "A11AAA1111"]))

    results = fetched.results
    assert isinstance(results[("one", 0)], AgentStatus) and results[("one", 0)].is_terminal
    assert isinstance(results[("one", 1)], AgentNotFoundError)
    assert isinstance(results[("one", 2)], UpstreamError)
    assert isinstance(results[("one", 3)], AgentStatus)  # a second request: its own answer
    # Retries are off by default (the poller's next poll is its retry); each request once.
    assert route.call_count == 4
    assert fetched.rate_limited == {}


def test_statuses_fetch_retries_when_asked(api):
    route = api.get("/v1/agent/status/A11AAA1111").mock(
        side_effect=[envelope(503, "NO_AVAILABLE_WORKERS", "busy"), status_answer("A11AAA1111")]
    )

    fetched = fetch(requests_for(["A11AAA1111"]), max_retries=1)

    assert isinstance(fetched.results[("one", 0)], AgentStatus)
    assert route.call_count == 2


def test_the_first_429_of_an_account_stops_its_other_requests(api):
    def answer(request: httpx.Request, agent_id: str) -> httpx.Response:
        if request.headers["api-secret"] == SECRET:
            return envelope(429, "RATE_LIMITED", "slow down", headers={"Retry-After": "7"})
        return status_answer(agent_id)

    route = api.get(path__regex=STATUS_PATH).mock(side_effect=answer)
    requests = requests_for(["A01AAA0001", "A02AAA0002", "A03AAA0003"])
    requests += requests_for(["A04AAA0004", "A05AAA0005"], account=OTHER)

    fetched = fetch(requests, concurrency=1)

    first, *rest = (fetched.results[("one", n)] for n in range(3))
    assert isinstance(first, RateLimitedError) and first.retry_after == 7.0
    assert rest == [UNSENT, UNSENT]
    assert fetched.rate_limited == {"one": 7.0}
    assert all(isinstance(fetched.results[("two", n)], AgentStatus) for n in range(2))
    assert route.call_count == 3  # one for the limited account, two for the other


def test_a_429_without_retry_after_waits_the_default(api):
    api.get(path__regex=STATUS_PATH).mock(return_value=envelope(429, "RATE_LIMITED", "no"))

    fetched = fetch(requests_for(["A01AAA0001"]))

    assert fetched.rate_limited == {"one": aio.DEFAULT_RETRY_AFTER}


def test_answers_after_the_deadline_are_left_out(api):
    async def answer(request: httpx.Request, agent_id: str) -> httpx.Response:
        if agent_id == "A02SLOW002":
            await asyncio.sleep(5)
        return status_answer(agent_id)

    api.get(path__regex=STATUS_PATH).mock(side_effect=answer)

    fetched = fetch(requests_for(["A01FAST001", "A02SLOW002"]), deadline=0.3)

    assert set(fetched.results) == {("one", 0)}


def test_concurrency_must_be_positive():
    with pytest.raises(ValueError, match="concurrency"):
        fetch(requests_for(["A11AAA1111"]), concurrency=0)


def test_the_pooled_transport_spreads_requests_over_small_pools():
    transport = aio.PooledTransport(connections=20)
    assert len(transport._pools) == 3  # 20 connections, at most 8 per pool
    assert aio.tls_context() is aio.tls_context()  # made once per process
    aio.run(transport.pools_close())


def test_async_retries_honour_retry_after(api):
    api.get("/v1/agent/status/A11AAA1111").mock(
        side_effect=[
            envelope(429, "RATE_LIMITED", "slow down", headers={"Retry-After": "4"}),
            status_answer("A11AAA1111"),
        ]
    )
    sleeps: list[float] = []

    async def run() -> AgentStatus:
        async with async_client(sleeps=sleeps) as client:
            return await client.agent_status_get(agent_id="A11AAA1111")

    status = aio.run(run())

    assert status.status == "generating"
    assert sleeps == [4.0]


def test_async_repr_masks_the_secret():
    client = async_client()

    assert SECRET not in repr(client)
    assert repr(client).endswith(f"api_secret='****{SECRET[-4:]}')")
    aio.run(client.aclose())
