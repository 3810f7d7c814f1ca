"""The real BithumanClient against the sandbox, over real HTTP, with every exchange recorded.

`harness.client(tenant)` builds a `BithumanClient` whose transport is a `RecordingTransport`
around `httpx.HTTPTransport()`. When the test ends, every recorded request body is validated
against the spec's requestBody and every answer against its response schema
(`contract.exchanges_check`); a drift fails the test loudly, naming the operation and the schema
error. The sandbox's own control API (/sandbox/control/*: knobs, test clock) is not bitHuman's
API, so it goes through a separate, unrecorded httpx client (`tenant.control`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from portal.bithuman import AsyncBithumanClient, BithumanClient
from sandbox import services
from sandbox.models import SandboxAccount
from tests.conformance.contract import (
    AsyncRecordingTransport,
    Exchange,
    RecordingTransport,
    exchanges_check,
)
from tests.sandbox.conftest import SandboxClient, live_server, webhook_receiver

__all__ = ["live_server", "webhook_receiver"]  # fixtures shared with tests/sandbox


@dataclass
class Tenant:
    """One sandbox account: its secret and its (unrecorded) control API client."""

    account: SandboxAccount
    secret: str
    control: SandboxClient

    def advance(self, seconds: float) -> None:
        """Move the account's sandbox clock forward (POST /sandbox/control/clock)."""
        self.control.advance(seconds)

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Set account knobs (POST /sandbox/control/account): error_rate, suspended, ..."""
        return self.control.configure(**knobs)


@dataclass
class Harness:
    base_url: str
    transports: list[RecordingTransport | AsyncRecordingTransport] = field(default_factory=list)
    clients: list[BithumanClient] = field(default_factory=list)
    tenants: list[Tenant] = field(default_factory=list)
    # Delays the clients asked to sleep (the default injected `sleep` records, never sleeps).
    sleeps: list[float] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/sandbox"

    def tenant(
        self, *, plan: str = "pro", credits: int = 10_000, time_scale: float | None = 0.0, **knobs
    ) -> Tenant:
        """A fresh sandbox account; its clock is frozen unless `time_scale` says otherwise."""
        account, secret = services.sandbox_account_create(plan=plan, credits=credits)
        services.sandbox_account_configure(
            account=account, changes={"time_scale": time_scale, **knobs}
        )
        tenant = Tenant(
            account=account, secret=secret, control=SandboxClient(self.base_url, secret)
        )
        self.tenants.append(tenant)
        return tenant

    def transport(self, **checks: bool) -> RecordingTransport:
        """A recording transport whose exchanges are checked at teardown."""
        transport = RecordingTransport(**checks)
        self.transports.append(transport)
        return transport

    def client(
        self,
        tenant: Tenant | None = None,
        *,
        secret: str | None = None,
        sleep: Callable[[float], None] | None = None,
        **options: Any,
    ) -> BithumanClient:
        """The real client for `tenant` (or a raw `secret`), recorded and contract-checked."""
        if secret is None:
            assert tenant is not None, "give a tenant or a secret"
            secret = tenant.secret
        client = BithumanClient(
            base_url=self.api_url,
            api_secret=secret,
            transport=self.transport(),
            sleep=sleep or self.sleeps.append,
            **options,
        )
        self.clients.append(client)
        return client

    def async_transport(self) -> AsyncRecordingTransport:
        """A recording asynchronous transport (closed by the test, inside its event loop)."""
        transport = AsyncRecordingTransport()
        self.transports.append(transport)
        return transport

    def async_client(self, tenant: Tenant, **options: Any) -> AsyncBithumanClient:
        """The asynchronous client (closed by the test, inside its event loop)."""
        transport = self.async_transport()

        async def no_sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        return AsyncBithumanClient(
            base_url=self.api_url,
            api_secret=tenant.secret,
            transport=transport,
            sleep=no_sleep,
            **options,
        )

    @property
    def exchanges(self) -> list[Exchange]:
        """Everything every client sent and got, in order per client."""
        return [exchange for t in self.transports for exchange in t.exchanges]

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for tenant in self.tenants:
            tenant.control.close()


@pytest.fixture
def harness(live_server, transactional_db) -> Iterator[Harness]:
    """Clients and tenants for one test; at teardown every exchange is checked against the spec."""
    harness = Harness(base_url=live_server.url)
    try:
        yield harness
    finally:
        harness.close()
    exchanges_check(harness.exchanges)


@pytest.fixture
def tenant(harness: Harness) -> Tenant:
    """A Pro account with a frozen clock."""
    return harness.tenant()


@pytest.fixture
def client(harness: Harness, tenant: Tenant) -> BithumanClient:
    """The real client for `tenant`."""
    return harness.client(tenant)
