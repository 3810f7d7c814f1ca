"""Asynchronous I/O with bitHuman: running a coroutine from synchronous code, and many status
requests at once over one pool of connections (the poller's batches).

`statuses_fetch` sends every request concurrently (at most `concurrency` in flight) for any
number of accounts, over one `PooledTransport` on a TLS context made once per process; the
first 429 of an account stops its remaining requests; whatever has not answered by `deadline`
is left out of the results. Each request carries the caller's own key (the poller: the agent's
primary key), so two requests for one agent code are two results.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import ssl
from collections.abc import Coroutine, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from portal.bithuman.async_client import AsyncBithumanClient
from portal.bithuman.errors import BithumanError, RateLimitedError
from portal.bithuman.types import AgentStatus

# Seconds to stay away from an account that answered 429 without a Retry-After.
DEFAULT_RETRY_AFTER = 5.0


def run[T](coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, also when this thread already runs an event loop (then in a helper thread).

    Playwright's sync API, for one, keeps a loop running in the test process's main thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# --- Pooled connections -------------------------------------------------------------------------


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi, or SSL_CERT_FILE/SSL_CERT_DIR), made once:
    a client with its own transport builds one, ~25 ms of CPU each."""
    return httpx.create_ssl_context()


class PooledTransport(httpx.AsyncBaseTransport):
    """Connections shared by every account's client (the secret is a header of each request, so
    a connection serves any account).

    They are spread over small pools: httpcore checks every connection of a pool each time a
    request starts or ends, so one pool of 40 costs ~5 times the CPU of five pools of 8. A
    request goes to the pool with the fewest requests in flight. Closing a client leaves the
    pools open for the others; their owner closes them once, with `pools_close`.
    """

    def __init__(self, *, connections: int, per_pool: int = 8) -> None:
        count = max(1, math.ceil(connections / per_pool))
        size = math.ceil(connections / count)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self._pools = [
            httpx.AsyncHTTPTransport(verify=tls_context(), limits=limits) for _ in range(count)
        ]
        self._in_flight = [0] * count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._pools)), key=self._in_flight.__getitem__)
        self._in_flight[index] += 1
        try:
            return await self._pools[index].handle_async_request(request)
        finally:
            self._in_flight[index] -= 1

    async def aclose(self) -> None:
        pass  # the clients' aclose(); the owner calls pools_close()

    async def pools_close(self) -> None:
        await asyncio.gather(*(pool.aclose() for pool in self._pools))


class _Borrowed(httpx.AsyncBaseTransport):
    """A caller's transport, shared by several clients and left open when they close."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.handle_async_request(request)


# --- Many statuses ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusAccount:
    """One bitHuman account: `key` names it in the results (the poller: a hash of the secret)."""

    key: str
    base_url: str
    api_secret: str = field(repr=False)


@dataclass(frozen=True)
class StatusRequest[K: Hashable]:
    """One status to fetch: `key` is the caller's name for it in the results."""

    key: K
    account: StatusAccount
    agent_id: str


class Unsent:
    """A request not sent because its account answered 429 meanwhile."""

    def __repr__(self) -> str:
        return "UNSENT"


UNSENT = Unsent()

type StatusResult = AgentStatus | BithumanError | Unsent


@dataclass
class StatusesFetched[K: Hashable]:
    # Per request key: the status, the error, or UNSENT; absent: no answer by the deadline.
    results: dict[K, StatusResult] = field(default_factory=dict)
    # Per account key that answered 429: the seconds it asked us to wait (the longest).
    rate_limited: dict[str, float] = field(default_factory=dict)


async def statuses_fetch[K: Hashable](
    requests: Sequence[StatusRequest[K]],
    *,
    concurrency: int,
    deadline: float,
    timeout: float,
    max_retries: int = 0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> StatusesFetched[K]:
    """Every status in `requests`, concurrently, within `deadline` seconds.

    One client per account, all on one `PooledTransport` of `concurrency` connections (or on
    `transport`, which the caller then closes), each request bounded by `timeout`. With
    `max_retries` 0 (the poller: the next poll is the retry) every request is sent once.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    slots = asyncio.Semaphore(concurrency)
    fetched: StatusesFetched[K] = StatusesFetched()
    limited = fetched.rate_limited
    pooled: PooledTransport | None = None
    shared: httpx.AsyncBaseTransport
    if transport is None:
        shared = pooled = PooledTransport(connections=concurrency)
    else:
        shared = _Borrowed(transport)
    accounts = {request.account.key: request.account for request in requests}
    clients = {
        key: AsyncBithumanClient(
            base_url=account.base_url,
            api_secret=account.api_secret,
            timeout=timeout,
            max_retries=max_retries,
            transport=shared,
        )
        for key, account in accounts.items()
    }

    async def fetch_one(request: StatusRequest[K]) -> None:
        account = request.account.key
        async with slots:
            if account in limited:
                fetched.results[request.key] = UNSENT
                return
            try:
                status = await clients[account].agent_status_get(agent_id=request.agent_id)
            except RateLimitedError as error:
                limited[account] = max(
                    limited.get(account, 0.0), error.retry_after or DEFAULT_RETRY_AFTER
                )
                fetched.results[request.key] = error
            except BithumanError as error:
                fetched.results[request.key] = error
            else:
                fetched.results[request.key] = status

    try:
        tasks = [asyncio.create_task(fetch_one(request)) for request in requests]
        _done, pending = await asyncio.wait(tasks, timeout=deadline) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        await asyncio.gather(*(client.aclose() for client in clients.values()))
        if pooled is not None:
            await pooled.pools_close()
    return fetched
