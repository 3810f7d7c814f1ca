"""Asynchronous I/O with bitHuman: running a coroutine from synchronous code, and many status
requests at once over pooled connections (the poller's batches).

`statuses_fetch` sends every request concurrently (at most `concurrency` in flight) for any
number of accounts; the first 429 of an account stops its remaining requests; whatever has not
answered by `deadline` is left out of the results. Each request carries the caller's own key (the
poller: the agent's primary key), so two requests for one agent code are two results.

It speaks HTTP with aiohttp rather than httpx: a status poll is one small GET, and httpx spends
about 2 ms of CPU on each (its connection pool checks every connection at every request start and
end), aiohttp about 0.15 ms (C-accelerated parser, a pool that does not scan). The meaning of an
answer is not decided here: a 2xx is parsed by the operation's own `_Call.parse`, anything else
goes through `_ClientCore.response_map` like every other call, so errors, `X-Request-Id` and
Retry-After are read exactly as by the clients.

Connections outlive one batch: each process keeps one event loop in a background thread
(`background_run`) with one aiohttp session on it, so keep-alive connections (and their TLS
sessions) are reused by the next batch instead of being opened again. A forked child (Celery's
prefork pool) starts its own.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import pydantic

from portal.bithuman.core import (
    CONNECT_TIMEOUT_MAX_SECONDS,
    SECRET_HEADER,
    USER_AGENT,
    _agent_status_call,
    _Call,
    _ClientCore,
    _ShapeError,
)
from portal.bithuman.errors import BithumanError, RateLimitedError, TransportError
from portal.bithuman.types import AgentStatus

# Seconds to stay away from an account that answered 429 without a Retry-After.
DEFAULT_RETRY_AFTER = 5.0
# Seconds an idle pooled connection is kept open for the next batch.
KEEPALIVE_SECONDS = 30.0


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


# --- One event loop per process, with pooled connections ----------------------------------------


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi, or SSL_CERT_FILE/SSL_CERT_DIR), made once
    per process (~25 ms of CPU each)."""
    return httpx.create_ssl_context()


class _Background:
    """An event loop running in a daemon thread of this process, and the aiohttp session that
    lives on it (made on first use, inside the loop)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.session: aiohttp.ClientSession | None = None
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="bithuman-aio", daemon=True
        )
        self.thread.start()

    def session_get(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            connector = aiohttp.TCPConnector(
                limit=0,  # the callers' semaphores bound what is in flight
                ssl=tls_context(),
                keepalive_timeout=KEEPALIVE_SECONDS,
                ttl_dns_cache=300,
            )
            self.session = aiohttp.ClientSession(
                connector=connector,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self.session

    def close(self) -> None:
        """Close the pooled connections (at interpreter exit; the thread is a daemon)."""
        if self.pid != os.getpid() or self.session is None or self.loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self.session.close(), self.loop)
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            future.result(timeout=2)


_background: _Background | None = None
_background_lock = threading.Lock()
# A forked child's copy of its parent's loop and session: never used, never closed, but kept
# referenced so that collecting them does not log "Unclosed client session".
_inherited: list[_Background] = []


@atexit.register
def _background_close() -> None:
    if _background is not None:
        _background.close()


def _background_get() -> _Background:
    global _background
    with _background_lock:
        if _background is None or _background.pid != os.getpid():
            if _background is not None:
                _inherited.append(_background)
            _background = _Background()  # first use, or a forked child (its own loop)
        return _background


def background_run[T](coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on this process's background loop and wait for its result (from any
    thread, also one that runs its own event loop)."""
    background = _background_get()
    future = asyncio.run_coroutine_threadsafe(coroutine, background.loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()  # e.g. a task's soft time limit: stop the requests too
        raise


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
) -> StatusesFetched[K]:
    """Every status in `requests`, concurrently, within `deadline` seconds.

    At most `concurrency` requests in flight, each bounded by `timeout`, over the process's
    pooled connections (awaited from any event loop: the work runs on the background loop).
    With `max_retries` 0 (the poller: the next poll is the retry) every request is sent once.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    background = _background_get()
    work = _statuses_fetch(
        requests,
        session_of=background.session_get,
        concurrency=concurrency,
        deadline=deadline,
        timeout=timeout,
        max_retries=max_retries,
    )
    if asyncio.get_running_loop() is background.loop:
        return await work
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, background.loop))


def statuses_fetch_sync[K: Hashable](
    requests: Sequence[StatusRequest[K]],
    *,
    concurrency: int,
    deadline: float,
    timeout: float,
    max_retries: int = 0,
) -> StatusesFetched[K]:
    """`statuses_fetch` from synchronous code (the poller), without an event loop of its own."""
    return background_run(
        statuses_fetch(
            requests,
            concurrency=concurrency,
            deadline=deadline,
            timeout=timeout,
            max_retries=max_retries,
        )
    )


class _Account:
    """What one account's requests share: the client core (response mapping, retry decisions,
    scrubbing) and the request headers."""

    def __init__(self, account: StatusAccount, *, timeout: float, max_retries: int) -> None:
        self.core = _ClientCore(
            base_url=account.base_url,
            api_secret=account.api_secret,
            timeout=timeout,
            max_retries=max_retries,
            max_total_sleep=timeout,
        )
        self.headers = {SECRET_HEADER: account.api_secret}
        self.timeout = aiohttp.ClientTimeout(
            total=timeout, connect=min(timeout, CONNECT_TIMEOUT_MAX_SECONDS)
        )

    async def status_get(
        self, session: aiohttp.ClientSession, agent_id: str
    ) -> AgentStatus | BithumanError:
        """One status with the core's retry decisions: the parsed answer or the final error."""
        call = _agent_status_call(agent_id=agent_id)
        url = self.core.base_url + call.path
        attempt, slept = 0, 0.0
        while True:
            started = time.monotonic()
            result = await self._attempt(session, call, url)
            if not isinstance(result, BithumanError):
                self.core.attempt_log(call=call, status=200, started=started, attempt=attempt)
                return result
            if result.http_status is not None:
                self.core.attempt_log(
                    call=call, status=result.http_status, started=started, attempt=attempt
                )
            delay = self.core.retry_delay_choose(
                error=result, replay_safe=call.replay_safe, attempt=attempt, slept=slept
            )
            if delay is None:
                return result
            self.core.retry_log(call=call, error=result, delay=delay, attempt=attempt)
            await asyncio.sleep(delay)
            slept += delay
            attempt += 1

    async def _attempt(
        self, session: aiohttp.ClientSession, call: _Call[AgentStatus], url: str
    ) -> AgentStatus | BithumanError:
        try:
            async with session.get(
                url, headers=self.headers, timeout=self.timeout, allow_redirects=False
            ) as response:
                body = await response.read()
                status = response.status
                headers = response.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self._transport_error(exc)
        if 200 <= status < 300:
            # The common answer, without building an httpx.Response: the call's own parser.
            try:
                return call.parse(json.loads(body))
            except (ValueError, _ShapeError, pydantic.ValidationError):
                pass  # response_map says exactly what is wrong with it
        mirrored = httpx.Response(
            status,
            headers=list(headers.items()),
            content=body,
            request=httpx.Request(call.method, url),
        )
        try:
            return self.core.response_map(call, mirrored)
        except BithumanError as error:
            return error

    def _transport_error(self, exc: BaseException) -> TransportError:
        # A connection never established reached nobody; anything later may have arrived.
        detail = self.core.scrub(str(exc)) or "no detail"
        name = "ReadTimeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        return TransportError(
            message=f"no answer from bitHuman ({name}: {detail})",
            request_may_have_arrived=not isinstance(exc, aiohttp.ClientConnectorError),
        )


async def _statuses_fetch[K: Hashable](
    requests: Sequence[StatusRequest[K]],
    *,
    session_of: Callable[[], aiohttp.ClientSession],
    concurrency: int,
    deadline: float,
    timeout: float,
    max_retries: int,
) -> StatusesFetched[K]:
    session = session_of()
    slots = asyncio.Semaphore(concurrency)
    fetched: StatusesFetched[K] = StatusesFetched()
    limited = fetched.rate_limited
    accounts = {
        request.account.key: _Account(request.account, timeout=timeout, max_retries=max_retries)
        for request in requests
    }

    async def fetch_one(request: StatusRequest[K]) -> None:
        key = request.account.key
        async with slots:
            if key in limited:
                fetched.results[request.key] = UNSENT
                return
            result = await accounts[key].status_get(session, request.agent_id)
            if isinstance(result, RateLimitedError):
                limited[key] = max(limited.get(key, 0.0), result.retry_after or DEFAULT_RETRY_AFTER)
            fetched.results[request.key] = result

    tasks = [asyncio.create_task(fetch_one(request)) for request in requests]
    if tasks:
        _done, pending = await asyncio.wait(tasks, timeout=deadline)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return fetched
