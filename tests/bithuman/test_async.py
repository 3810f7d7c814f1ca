"""The asynchronous client: bounded concurrent status fetching for the poller."""

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

    async def run() -> dict:
        async with async_client() as client:
            return await client.statuses_fetch(agent_ids, concurrency=concurrency)

    results = aio.run(run())

    # Equal, not just at most: the bound is reached, so the fetches really are concurrent.
    assert peak == concurrency
    assert list(results) == agent_ids


def test_statuses_fetch_returns_a_result_or_an_error_per_id(api):
    def answer(request: httpx.Request, agent_id: str) -> httpx.Response:
        if agent_id == "A00MIS0000":
            return envelope(404, "NOT_FOUND", f"Agent not found for code: {agent_id}")
        if agent_id == "A00BRK0000":
            return envelope(500, "INTERNAL_ERROR", "boom")
        return status_answer(agent_id, status="ready")

    route = api.get(path__regex=STATUS_PATH).mock(side_effect=answer)
    sleeps: list[float] = []

    async def run() -> dict:
        async with async_client(sleeps=sleeps) as client:
            return await client.statuses_fetch(
                ["A11AAA1111", "A00MIS0000", "A00BRK0000", "A11AAA1111"], concurrency=2
            )

    results = aio.run(run())

    assert set(results) == {"A11AAA1111", "A00MIS0000", "A00BRK0000"}
    ready = results["A11AAA1111"]
    assert isinstance(ready, AgentStatus)
    assert ready.is_terminal
    assert isinstance(results["A00MIS0000"], AgentNotFoundError)
    assert isinstance(results["A00BRK0000"], UpstreamError)
    # Duplicates are fetched once; the 500 was retried twice (max_retries=2), the 404 never.
    assert route.call_count == 1 + 1 + 3
    assert len(sleeps) == 2


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


def test_async_gives_up_with_the_rate_limit_error(api):
    api.get("/v1/agent/status/A11AAA1111").mock(
        return_value=envelope(429, "RATE_LIMITED", "slow down", headers={"Retry-After": "1"})
    )

    async def run() -> dict:
        async with async_client(max_retries=1) as client:
            return await client.statuses_fetch(["A11AAA1111"])

    results = aio.run(run())

    assert isinstance(results["A11AAA1111"], RateLimitedError)
    assert results["A11AAA1111"].retry_after == 1.0


def test_concurrency_must_be_positive():
    async def run() -> None:
        async with async_client() as client:
            await client.statuses_fetch(["A11AAA1111"], concurrency=0)

    with pytest.raises(ValueError, match="concurrency"):
        aio.run(run())


def test_async_repr_masks_the_secret():
    client = async_client()

    assert SECRET not in repr(client)
    assert repr(client).endswith(f"api_secret='****{SECRET[-4:]}')")
    aio.run(client.aclose())
