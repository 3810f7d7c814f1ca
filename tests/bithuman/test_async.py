"""The asynchronous client, and many statuses at once over pooled connections (`aio.statuses_fetch`,
the poller's fetch, over real HTTP to a scripted local server)."""

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from aiohttp import web

from portal.bithuman import (
    AgentNotFoundError,
    AgentStatus,
    AsyncBithumanClient,
    MalformedResponseError,
    RateLimitedError,
    TransportError,
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


# --- Many statuses over real HTTP (aiohttp): a scripted local server ------------------------------

Answer = Callable[[web.Request, str], Awaitable[httpx.Response] | httpx.Response]


class StatusServer:
    """A local HTTP server answering GET /v1/agent/status/{id} with whatever `answer` returns
    (an httpx.Response, e.g. `envelope(...)`), on its own event loop in a thread."""

    def __init__(self) -> None:
        self.answer: Answer = lambda request, agent_id: status_answer(agent_id)
        self.calls = 0
        self.peers: set[tuple[str, int]] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)

    async def _start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/v1/agent/status/{agent_id}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        return runner

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if request.transport is not None:
            self.peers.add(request.transport.get_extra_info("peername"))
        answer = self.answer(request, request.match_info["agent_id"])
        if inspect.isawaitable(answer):
            answer = await answer
        headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
        return web.Response(status=answer.status_code, body=answer.content, headers=headers)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[StatusServer]:
    running = StatusServer()
    yield running
    running.close()


def accounts(server: StatusServer) -> tuple[StatusAccount, StatusAccount]:
    return (
        StatusAccount(key="one", base_url=server.base_url, api_secret=SECRET),
        StatusAccount(key="two", base_url=server.base_url, api_secret=SECRET[::-1]),
    )


def requests_for(agent_ids, account: StatusAccount) -> list[StatusRequest]:
    return [
        StatusRequest(key=(account.key, n), account=account, agent_id=agent_id)
        for n, agent_id in enumerate(agent_ids)
    ]


def fetch(requests, **options) -> aio.StatusesFetched:
    settings = {"concurrency": 4, "deadline": 5.0, "timeout": 5.0} | options
    return aio.statuses_fetch_sync(requests, **settings)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_statuses_fetch_keeps_at_most_concurrency_requests_in_flight(server, concurrency):
    in_flight = 0
    peak = 0

    async def answer(request: web.Request, agent_id: str) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return status_answer(agent_id)

    server.answer = answer
    one, _two = accounts(server)
    agent_ids = [f"A{n:02d}ABC1234" for n in range(10)]

    fetched = fetch(requests_for(agent_ids, one), concurrency=concurrency)

    # Equal, not just at most: the bound is reached, so the fetches really are concurrent.
    assert peak == concurrency
    assert [fetched.results[("one", n)].agent_id for n in range(10)] == agent_ids


def test_statuses_fetch_returns_a_result_or_an_error_per_request(server):
    def answer(request: web.Request, agent_id: str) -> httpx.Response:
        if agent_id == "A00MIS0000":
            return envelope(404, "NOT_FOUND", f"Agent not found for code: {agent_id}")
        if agent_id == "A00BRK0000":
            return envelope(500, "INTERNAL_ERROR", "boom", headers={"X-Request-Id": "req-77"})
        if agent_id == "A00BAD0000":
            return httpx.Response(200, json={"success": True, "data": {"progress": "half"}})
        return status_answer(agent_id, status="ready")

    server.answer = answer
    one, _two = accounts(server)

    fetched = fetch(
        requests_for(["A11AAA1111", "A00MIS0000", "A00BRK0000", "A11AAA1111", "A00BAD0000"], one)
    )

    results = fetched.results
    assert isinstance(results[("one", 0)], AgentStatus) and results[("one", 0)].is_terminal
    assert isinstance(results[("one", 1)], AgentNotFoundError)
    assert isinstance(results[("one", 2)], UpstreamError)
    assert results[("one", 2)].request_id == "req-77"  # kept for bitHuman's support
    assert isinstance(results[("one", 3)], AgentStatus)  # a second request: its own answer
    assert isinstance(results[("one", 4)], MalformedResponseError)  # said what is wrong
    assert "status" in results[("one", 4)].message
    # Retries are off by default (the poller's next poll is its retry); each request once.
    assert server.calls == 5
    assert fetched.rate_limited == {}


def test_statuses_fetch_retries_when_asked(server):
    answers = iter([envelope(503, "NO_AVAILABLE_WORKERS", "busy"), status_answer("A11AAA1111")])
    server.answer = lambda request, agent_id: next(answers)
    one, _two = accounts(server)

    fetched = fetch(requests_for(["A11AAA1111"], one), max_retries=1)

    assert isinstance(fetched.results[("one", 0)], AgentStatus)
    assert server.calls == 2


def test_the_first_429_of_an_account_stops_its_other_requests(server):
    def answer(request: web.Request, agent_id: str) -> httpx.Response:
        if request.headers["api-secret"] == SECRET:
            return envelope(429, "RATE_LIMITED", "slow down", headers={"Retry-After": "7"})
        return status_answer(agent_id)

    server.answer = answer
    one, two = accounts(server)
    requests = requests_for(["A01AAA0001", "A02AAA0002", "A03AAA0003"], one)
    requests += requests_for(["A04AAA0004", "A05AAA0005"], two)

    fetched = fetch(requests, concurrency=1)

    first, *rest = (fetched.results[("one", n)] for n in range(3))
    assert isinstance(first, RateLimitedError) and first.retry_after == 7.0
    assert rest == [UNSENT, UNSENT]
    assert fetched.rate_limited == {"one": 7.0}
    assert all(isinstance(fetched.results[("two", n)], AgentStatus) for n in range(2))
    assert server.calls == 3  # one for the limited account, two for the other


def test_a_429_without_retry_after_waits_the_default(server):
    server.answer = lambda request, agent_id: envelope(429, "RATE_LIMITED", "no")
    one, _two = accounts(server)

    fetched = fetch(requests_for(["A01AAA0001"], one))

    assert fetched.rate_limited == {"one": aio.DEFAULT_RETRY_AFTER}


def test_answers_after_the_deadline_are_left_out(server):
    async def answer(request: web.Request, agent_id: str) -> httpx.Response:
        if agent_id == "A02SLOW002":
            await asyncio.sleep(3)
        return status_answer(agent_id)

    server.answer = answer
    one, _two = accounts(server)

    fetched = fetch(requests_for(["A01FAST001", "A02SLOW002"], one), deadline=0.3)

    assert set(fetched.results) == {("one", 0)}


def test_a_refused_connection_is_a_transport_error_that_reached_nobody(server):
    port = server.port
    server.close()  # nothing listens there any more
    account = StatusAccount(key="one", base_url=f"http://127.0.0.1:{port}", api_secret=SECRET)

    fetched = fetch(requests_for(["A01AAA0001"], account))

    error = fetched.results[("one", 0)]
    assert isinstance(error, TransportError) and not error.request_may_have_arrived
    assert SECRET not in str(error)
    server.close = lambda: None  # closed already


def test_connections_are_kept_for_the_next_batch(server):
    one, _two = accounts(server)

    for round_ in range(3):
        fetched = fetch(requests_for([f"A{n:02d}KEEP{round_}" for n in range(8)], one))
        assert len(fetched.results) == 8

    # 24 requests, at most 4 in flight: the connections of the first batch served the others.
    assert server.calls == 24
    assert len(server.peers) <= 4
    assert aio.tls_context() is aio.tls_context()  # made once per process


def test_statuses_fetch_can_be_awaited_from_any_event_loop(server):
    one, _two = accounts(server)
    requests = requests_for(["A01LOOP001"], one)

    async def from_another_loop() -> aio.StatusesFetched:
        return await aio.statuses_fetch(requests, concurrency=1, deadline=5, timeout=5)

    fetched = aio.run(from_another_loop())

    assert isinstance(fetched.results[("one", 0)], AgentStatus)


def test_concurrency_must_be_positive(server):
    one, _two = accounts(server)
    with pytest.raises(ValueError, match="concurrency"):
        fetch(requests_for(["A11AAA1111"], one), concurrency=0)


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
