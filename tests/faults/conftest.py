"""The fault-injection suite (`make test-faults`): the real stack, with faults injected.

Each case runs PostgreSQL (pytest-django's test database, so `transaction=True`), Redis as the
Celery broker (database FAULTS_BROKER_DB, 7 by default) and as the cache (REDIS_URL), real
`celery -A portal worker --beat` processes, and the portal with its bitHuman sandbox served over
HTTP by pytest-django's live server (in this process, so every request reaching the sandbox is
counted: `tests.agents.test_poller.upstream`). Faults are real: SIGKILL and SIGTERM of workers,
two beats at once, the sandbox's latency / 503 / 429 knobs, a TCP proxy that drops connections,
forged and replayed webhooks, a key rotation under a running poller.

Every case records its figures; the run ends with one line per case (faults injected, agents and
messages processed, lost, duplicated). Without PostgreSQL or Redis the cases fail with a message
saying so; they never skip.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from celery import Celery

from agents.models import TERMINAL_STATUSES, Agent, AgentStatusChange
from tests import workers
from tests.agents.test_poller import sandbox, upstream, wait_for

__all__ = ["sandbox", "upstream"]  # fixtures shared with the poller's tests

BASE_DIR = Path(__file__).resolve().parents[2]
BROKER_DB = int(os.environ.get("FAULTS_BROKER_DB", "7"))
POLL_INTERVAL = 0.5  # the workers' AGENT_POLL_INTERVAL (beat's tick period)
POLL_LEASE = 4.0  # the workers' AGENT_POLL_LEASE (a fetch may take a quarter: 1 s)


# --- Figures --------------------------------------------------------------------------------------


@dataclass
class Figures:
    case: str
    faults: int = 0  # faults injected (kills, signals, refused or dropped requests, bad webhooks)
    agents: int = 0  # agents brought to their end through the faults
    messages: int = 0  # upstream requests, tasks and webhook deliveries that went through
    lost: int = 0
    duplicated: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        extra = f" ({'; '.join(self.notes)})" if self.notes else ""
        return (
            f"{self.case:<34} faults injected: {self.faults:>4}  agents: {self.agents:>3}  "
            f"messages: {self.messages:>5}  lost: {self.lost}  duplicated: {self.duplicated}{extra}"
        )


_FIGURES: list[tuple[Figures, str]] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    marker = request.node.get_closest_marker("fault_case")
    case = marker.args[0] if marker else request.node.name
    result = Figures(case=case)
    yield result
    report = request.node.stash.get(_CALL_REPORT, None)
    if report is None or not report.passed:
        result.notes.insert(0, "FAILED")
    _FIGURES.append((result, request.node.nodeid))


_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault_case(name): the case's name in the figures table")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("fault injection: figures per case")
    for figures, _nodeid in _FIGURES:
        terminalreporter.write_line(figures.line())
    total = Figures(case="total")
    for figures, _nodeid in _FIGURES:
        total.faults += figures.faults
        total.agents += figures.agents
        total.messages += figures.messages
        total.lost += figures.lost
        total.duplicated += figures.duplicated
    terminalreporter.write_line(total.line())


# --- Services -----------------------------------------------------------------------------------


def redis_urls() -> tuple[str, str]:
    return workers.redis_urls(broker_db=BROKER_DB, who="The fault suite")


def database_url_for_workers() -> str:
    return workers.database_url_for_workers(who="The fault suite")


# --- Workers ------------------------------------------------------------------------------------


Worker = workers.Worker  # the cases import it from here


@dataclass
class Stack:
    """The live server's sandbox URL, the broker, and the workers started by one case."""

    sandbox_url: str
    broker_url: str
    cache_url: str
    tmp: Path
    workers: list[Worker] = field(default_factory=list)
    _celery: Celery | None = None

    def start_worker(
        self, name: str, *, beat: bool = True, env: dict[str, str] | None = None
    ) -> Worker:
        environment = {
            **os.environ,
            "DJANGO_DEBUG": "true",
            "DATABASE_URL": database_url_for_workers(),
            "DATABASE_CONN_MAX_AGE": "0",
            "REDIS_URL": self.cache_url,
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "SANDBOX_BASE_URL": self.sandbox_url,
            "AGENT_POLL_INTERVAL": str(POLL_INTERVAL),
            "AGENT_POLL_LEASE": str(POLL_LEASE),
            # Backoff after transient errors is capped here, so an unlucky streak of injected
            # faults cannot push an agent's next poll past a case's time limit.
            "AGENT_POLL_MAX_INTERVAL": "4",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        worker = workers.celery_worker(
            name, env=environment, log=self.tmp / f"{name}.log", beat=beat
        )
        self.workers.append(worker)
        # Ready to take tasks (its start takes seconds on a busy machine): the cases' clocks
        # start here, not while Celery imports the portal.
        self.wait(lambda: " ready." in worker.log_text(), timeout=60)
        return worker

    def close(self) -> None:
        """Stop every worker this case started, and the broker connection used to send tasks."""
        for worker in self.workers:
            worker.stop()
        if self._celery is not None:
            self._celery.close()

    def send_task(self, name: str, *args: Any) -> None:
        """Queue a task on the broker, as the web process or beat would (tests run eager)."""
        if self._celery is None:
            self._celery = Celery("faults", broker=self.broker_url)
        self._celery.send_task(name, args=list(args))

    def logs(self) -> str:
        return "\n".join(f"--- {w.name} ---\n{w.log_text()[-2500:]}" for w in self.workers)

    def wait(self, condition: Callable[[], Any], *, timeout: float) -> Any:
        try:
            return wait_for(condition, timeout=timeout, step=0.05)
        except AssertionError as error:
            raise AssertionError(f"{error}; workers' logs:\n{self.logs()}") from None


@pytest.fixture
def stack(transactional_db: None, live_server: Any, tmp_path: Path) -> Iterator[Stack]:
    cache_url, broker_url = redis_urls()
    redis.Redis.from_url(broker_url).flushdb()  # no message left over by an earlier case
    result = Stack(
        sandbox_url=live_server.url + "/sandbox",
        broker_url=broker_url,
        cache_url=cache_url,
        tmp=tmp_path,
    )
    yield result
    result.close()


# --- A TCP proxy that drops connections ---------------------------------------------------------


class DroppingProxy:
    """Forwards TCP connections to `target`, closing a share of them at once, unanswered."""

    def __init__(self, target: str, *, drop_rate: float) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.path = parts.path
        self.drop_rate = drop_rate
        self.dropped = 0
        self.forwarded = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self._stopping = threading.Event()
        self._random = random.Random(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}{self.path}"

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._random.random() < self.drop_rate:
                self.dropped += 1
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                client.close()  # a reset: the request never arrives
                continue
            self.forwarded += 1
            threading.Thread(target=self._pipe_both, args=(client,), daemon=True).start()

    def _pipe_both(self, client: socket.socket) -> None:
        try:
            upstream_socket = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return

        def pipe(source: socket.socket, sink: socket.socket) -> None:
            try:
                while chunk := source.recv(65536):
                    sink.sendall(chunk)
            except OSError:
                pass
            finally:
                for end in (source, sink):
                    with contextlib.suppress(OSError):
                        end.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=pipe, args=(upstream_socket, client), daemon=True)
        back.start()
        pipe(client, upstream_socket)
        back.join(10)
        client.close()
        upstream_socket.close()

    def close(self) -> None:
        self._stopping.set()
        self._server.close()
        self._thread.join(2)


# --- Invariants ---------------------------------------------------------------------------------


def history_check(agents: list[Agent]) -> tuple[int, int]:
    """(lost, duplicated): agents that never ended, agents that ended more than once. Asserts
    that no agent's recorded progress ever moved backwards."""
    lost = duplicated = 0
    for agent in agents:
        changes = list(AgentStatusChange.objects.filter(agent_id=agent.pk).order_by("id"))
        progress = [change.progress for change in changes if change.to_status != "failed"]
        assert progress == sorted(progress), f"agent {agent.pk} moved backwards: {progress}"
        endings = [change for change in changes if change.to_status in TERMINAL_STATUSES]
        current = Agent.objects.get(pk=agent.pk)
        if current.status not in TERMINAL_STATUSES or not endings:
            lost += 1
        duplicated += max(len(endings) - 1, 0)
    return lost, duplicated
