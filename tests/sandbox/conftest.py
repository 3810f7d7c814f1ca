"""Fixtures for the sandbox tests: a live server, API clients per sandbox account, a webhook
receiver. Every test talks to the sandbox over real HTTP and every /v1 answer is checked against
openapi.yaml."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from django.contrib.staticfiles.handlers import StaticFilesHandler
from pytest_django.live_server_helper import LiveServer

from sandbox import services
from tests.sandbox.openapi import assert_valid

# An in-memory SQLite test database is one connection shared by the test and every server
# thread; interleaved transactions on it would corrupt each other, so the server handles one
# request at a time then. PostgreSQL (and file SQLite) runs requests truly concurrently.
_shared_connection_lock = threading.Lock()


class _OneAtATimeStaticFilesHandler(StaticFilesHandler):
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with _shared_connection_lock:
            return super().__call__(environ, start_response)


@pytest.fixture(scope="session")
def live_server(request: pytest.FixtureRequest, django_db_setup: None) -> Iterator[LiveServer]:
    """pytest-django's live server, started after the test database exists (so an in-memory
    SQLite connection is really shared with it) and serialized on such a shared connection."""
    addr = (
        request.config.getvalue("liveserver")
        or os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS")
        or "localhost"
    )
    server = LiveServer(addr, start=False)
    if server.thread.connections_override:
        server.thread.static_handler = _OneAtATimeStaticFilesHandler
    server.start()
    yield server
    server.stop()


class SandboxClient:
    """An httpx client holding one sandbox account's secret; /v1 answers are contract-checked."""

    def __init__(self, base_url: str, secret: str | None, account: Any = None):
        headers = {"api-secret": secret} if secret is not None else {}
        self.http = httpx.Client(base_url=f"{base_url}/sandbox", headers=headers, timeout=20)
        self.secret = secret
        self.account = account
        self.base_url = base_url

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if path.startswith(("/v1/", "/v2/")):
            assert_valid(response)
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    # --- Conveniences ---------------------------------------------------------------------------

    def generate(self, **body: Any) -> str:
        response = self.post("/v1/agent/generate", json={"prompt": "A friendly coach", **body})
        assert response.status_code == 200, response.text
        return response.json()["agent_id"]

    def status(self, agent_id: str) -> dict[str, Any]:
        response = self.get(f"/v1/agent/status/{agent_id}")
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def advance(self, seconds: float) -> None:
        response = self.post("/control/clock", json={"advance_seconds": seconds})
        assert response.status_code == 200, response.text

    def configure(self, **knobs: Any) -> dict[str, Any]:
        response = self.post("/control/account", json=knobs)
        assert response.status_code == 200, response.text
        return response.json()

    def credits(self) -> int:
        return self.get("/v1/me").json()["data"]["credit_balance"]

    def ready_agent(self, **body: Any) -> str:
        """A generated agent, brought to `ready` with the test clock."""
        agent_id = self.generate(**body)
        self.advance(10_000)
        assert self.status(agent_id)["status"] == "ready"
        return agent_id

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def sandbox_client(live_server):
    """Make clients: `sandbox_client(plan=..., credits=..., time_scale=...)`.

    Accounts get a frozen clock (time_scale 0) unless told otherwise: tests move time with
    `client.advance(seconds)`, so no test waits for a generation.
    """
    clients: list[SandboxClient] = []

    def make(
        *, plan: str = "pro", credits: int = 10_000, time_scale: float | None = 0.0, **knobs: Any
    ) -> SandboxClient:
        account, secret = services.sandbox_account_create(plan=plan, credits=credits)
        changes = {"time_scale": time_scale, **knobs}
        services.sandbox_account_configure(account=account, changes=changes)
        client = SandboxClient(live_server.url, secret, account)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def api(sandbox_client) -> SandboxClient:
    """A Pro sandbox account with a frozen clock."""
    return sandbox_client()


@pytest.fixture
def anonymous(live_server) -> Iterator[SandboxClient]:
    client = SandboxClient(live_server.url, None)
    yield client
    client.close()


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A real HTTP endpoint on 127.0.0.1 that records deliveries and answers scripted statuses."""

    url: str = ""
    received: list[ReceivedRequest] = field(default_factory=list)
    # Statuses to answer, in order; once used up, 200.
    script: list[int] = field(default_factory=list)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with lock:
                receiver.received.append(
                    ReceivedRequest(path=self.path, headers=dict(self.headers.items()), body=body)
                )
                status = receiver.script.pop(0) if receiver.script else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/bithuman"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()
