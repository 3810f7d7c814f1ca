"""The asynchronous bitHuman client: the same `_Call`s and decisions as the synchronous one
(core.py), sent with httpx.AsyncClient. Many statuses at once (the poller): `aio.statuses_fetch`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

import httpx
from django.views.decorators.debug import sensitive_variables

from portal.bithuman.core import (
    DEFAULT_MAX_TOTAL_SLEEP_SECONDS,
    _agent_status_call,
    _Call,
    _ClientCore,
    _ClientFace,
)
from portal.bithuman.types import AgentStatus

# --- Asynchronous client ------------------------------------------------------------------------


class AsyncBithumanClient(_ClientFace):
    """The asynchronous client, for fetching many statuses concurrently (the poller).

    Use as `async with AsyncBithumanClient(...) as client:` (or `await client.aclose()`).
    """

    @sensitive_variables("api_secret")
    def __init__(
        self,
        *,
        base_url: str,
        api_secret: str,
        timeout: float | None = None,
        max_retries: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_total_sleep: float = DEFAULT_MAX_TOTAL_SLEEP_SECONDS,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._core = _ClientCore(
            base_url=base_url,
            api_secret=api_secret,
            timeout=timeout,
            max_retries=max_retries,
            max_total_sleep=max_total_sleep,
        )
        self._sleep = sleep or asyncio.sleep
        self._http = httpx.AsyncClient(transport=transport, **self._core.http_options())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send[T](self, call: _Call[T]) -> T:
        """Drive `_ClientCore.exchange` (as BithumanClient._send does) with asyncio I/O."""
        steps = self._core.exchange(self._http, call)
        outcome: httpx.Response | httpx.RequestError | None = None
        try:
            while True:
                step = steps.send(outcome)
                if isinstance(step, httpx.Request):
                    try:
                        outcome = await self._http.send(step)
                    except httpx.RequestError as exc:
                        outcome = exc
                else:
                    await self._sleep(step)
                    outcome = None
        except StopIteration as done:
            return done.value

    async def agent_status_get(self, *, agent_id: str) -> AgentStatus:
        """GET /v1/agent/status/{agent_id}."""
        return await self._send(_agent_status_call(agent_id=agent_id))
