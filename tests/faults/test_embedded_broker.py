"""The embedded stack of `make run` under concurrent use: SQLite and the folder broker
(portal/filebroker.py), no server of any kind.

Each case runs the Procfile's own commands (read from the Procfile, run through `sh` as honcho
does for `make run`: `manage.py runserver` and `celery -A portal worker --beat ...`) on a fresh
PORTAL_VAR_DIR in a temporary folder, a free port, and none of DATABASE_URL, REDIS_URL or
CELERY_BROKER_URL, after `manage.py migrate` as `make run` does. The processes run from that
temporary folder (with `manage.py` linked into it), so nothing they write to a relative path
lands in the checkout.

Tasks are counted in the worker's own log: Celery logs "Task <name>[<id>] succeeded" once per run.

kombu 5.7.0's own file transport fails the stress case (tried 2026-12-03): its worker reads a
message file before the publisher has written it, exits on the JSONDecodeError (exit code 1),
and that message is lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings

from tests.agents.test_poller import wait_for
from tests.faults.conftest import BASE_DIR, Figures

pytestmark = pytest.mark.faults

SENDERS = 4  # processes publishing tasks straight to the broker, as beat and the web do
TASKS_PER_SENDER = 75
API_CLIENTS = 2  # threads creating agents through the web server's API
AGENTS_PER_CLIENT = 40
STRESS_TASK = (
    "organizations.tasks.invitations_expire"  # a real task that writes to SQLite (a DELETE)
)
PADDING = 256 * 1024  # bytes per stress message

# Whatever points the test process at PostgreSQL, Redis or another site: `make run` has none.
_NOT_EMBEDDED = (
    "DATABASE_URL",
    "DATABASE_CONN_MAX_AGE",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_TASK_ALWAYS_EAGER",
    "SANDBOX_ENABLED",
    "SANDBOX_BASE_URL",
    "PORTAL_SITE_URL",
    "PORTAL_VAR_DIR",
    "PORTAL_HOST",
    "PORTAL_PORT",
    "DJANGO_SETTINGS_MODULE",
)
_SUCCEEDED = re.compile(r"Task ([\w.]+)\[([-\w]+)\] succeeded")
_WORKER_DIED = ("Unrecoverable error", "JSONDecodeError", "Traceback")
_SQLITE_LOCKED = "database is locked"

# Run by `manage.py shell -c` in the stack's folder: the tenant the API clients act for.
_SETUP = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from organizations import services
from organizations import apikeys
from organizations import connections
from portal.models import ApiScope
from sandbox import services as sandbox_services

user = services.user_create(email="owner@example.com", password=None)
org = services.organization_create(name="Stress", owner=user)
secret = connections.connection_get(org=org).api_secret
account = sandbox_services.sandbox_account_for_secret(secret=secret)
sandbox_services.sandbox_account_configure(
    account=account, changes={"plan": "enterprise", "time_scale": 30, "credits": 10**7}
)
key = apikeys.api_key_create(
    org=org, name="stress", scopes=[ApiScope.AGENTS_READ, ApiScope.AGENTS_WRITE], created_by=user
).key
session = SessionStore()
session.update({
    SESSION_KEY: str(user.pk),
    BACKEND_SESSION_KEY: "portal.backends.EmailBackend",
    HASH_SESSION_KEY: user.get_session_auth_hash(),
})
session.create()
print(json.dumps({"org": org.slug, "key": key, "session": session.session_key}))
"""
# A process publishing tasks (format with sender, count, task, padding) at a pace the worker keeps
# up with, as beat and the web server do: a new message is then usually the next one the worker
# takes, which is when kombu's own transport can hand it over before it is written. The padding (a
# message header the task ignores) makes each message as large as one carrying an uploaded image,
# so writing one takes a while.
_SEND = """
import random, time
from portal.celery import app
headers = {{"padding": "x" * {padding}}}
for number in range({count}):
    app.send_task("{task}", task_id=f"stress-{sender}-{{number:04d}}", headers=headers)
    time.sleep(random.uniform(0, 0.3))
print("sent")
"""
_UPSTREAM = """
import json
from agents.models import Agent
from sandbox.models import SandboxAgent
print(json.dumps({
    "submitting": Agent.objects.filter(status="submitting").count(),
    "agents": Agent.objects.count(),
    "upstream": SandboxAgent.objects.count(),
    "upstream_codes": SandboxAgent.objects.values("code").distinct().count(),
}))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _procfile() -> dict[str, str]:
    """The Procfile's processes, name -> command, as honcho reads them."""
    processes = {}
    for line in (BASE_DIR / "Procfile").read_text().splitlines():
        name, separator, command = line.partition(":")
        if separator and name.strip() and not name.lstrip().startswith("#"):
            processes[name.strip()] = command.strip()
    return processes


@dataclass
class EmbeddedStack:
    """`make run`'s processes on their own PORTAL_VAR_DIR and port."""

    root: Path
    port: int
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    setup: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def celery_dir(self) -> Path:
        return self.root / "var" / "celery"

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def log_text(self, name: str) -> str:
        return self.log(name).read_text(errors="replace")

    def python(self, *arguments: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [sys.executable, *arguments],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, (
            f"python {' '.join(arguments)[:80]}: {done.stdout}{done.stderr}"
        )
        return done.stdout

    def shell(self, script: str) -> Any:
        return json.loads(self.python("manage.py", "shell", "-c", script).strip().splitlines()[-1])

    def start(self) -> None:
        for name, command in _procfile().items():
            with self.log(name).open("wb") as output:
                # As honcho runs it; `exec` (the Procfile's own, or added) makes the shell's PID
                # the process's.
                if not command.startswith("exec "):
                    command = f"exec {command}"
                self.processes[name] = subprocess.Popen(
                    ["/bin/sh", "-c", command],
                    cwd=self.root,
                    env=self.env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        self.wait(self.web_answers, timeout=60)
        self.wait(lambda: " ready." in self.log_text("worker"), timeout=60)

    def web_answers(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def wait(self, condition: Any, *, timeout: float) -> Any:
        """Wait for `condition`; fail at once, with the logs, if a process of the stack exits."""

        def met_while_up() -> Any:
            exited = [
                name for name, process in self.processes.items() if process.poll() is not None
            ]
            if exited:
                raise AssertionError(f"{', '.join(exited)} exited")
            return condition()

        try:
            return wait_for(met_while_up, timeout=timeout, step=0.2)
        except AssertionError as error:
            logs = "\n".join(
                f"--- {name} (exit code {process.poll()}) ---\n{self.log_text(name)[-3000:]}"
                for name, process in self.processes.items()
            )
            raise AssertionError(f"{error}\n{logs}") from None

    def succeeded(self) -> Counter[tuple[str, str]]:
        """(task name, task id) -> runs, from the worker's log."""
        return Counter(_SUCCEEDED.findall(self.log_text("worker")))

    def send(self, sender: int, count: int) -> subprocess.Popen[str]:
        script = _SEND.format(sender=sender, count=count, task=STRESS_TASK, padding=PADDING)
        return subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", script],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def queued(self) -> list[str]:
        """The task names of the messages waiting in the queue folder."""
        names = []
        for path in (self.celery_dir / "queue").glob("*.msg"):
            with contextlib.suppress(FileNotFoundError):  # taken meanwhile
                names.append(json.loads(path.read_bytes())["headers"]["task"])
        return names

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(20)
            with contextlib.suppress(ProcessLookupError):  # nothing of it outlives the case
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def embedded() -> Iterator[EmbeddedStack]:
    # mkdtemp, not tmp_path: pytest's folder name would be long and is shared with other files.
    root = Path(tempfile.mkdtemp(prefix="portal-embedded-"))
    (root / "manage.py").symlink_to(BASE_DIR / "manage.py")
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key not in _NOT_EMBEDDED}
    env.update(
        {
            "DJANGO_DEBUG": "true",
            "PORTAL_VAR_DIR": str(root / "var"),
            "PORTAL_HOST": "127.0.0.1",
            "PORTAL_PORT": str(port),
            # The sandbox (Test mode's upstream) is this runserver's own /sandbox.
            "PORTAL_SITE_URL": f"http://127.0.0.1:{port}",
            # As `make run`: the Procfile's `python` and `celery` are the virtualenv's.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(BASE_DIR),
            "PYTHONUNBUFFERED": "1",
        }
    )
    stack = EmbeddedStack(root=root, port=port, env=env)
    stack.python("manage.py", "migrate", "--noinput")
    stack.setup = stack.shell(_SETUP)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


def _assert_still_up(stack: EmbeddedStack, pids: dict[str, int]) -> None:
    for name, process in stack.processes.items():
        assert process.poll() is None, f"{name} exited:\n{stack.log_text(name)[-3000:]}"
        assert process.pid == pids[name]
    worker_log = stack.log_text("worker")
    for sign in _WORKER_DIED:
        assert sign not in worker_log, f"worker log shows {sign!r}:\n{worker_log[-3000:]}"
    for name in stack.processes:
        assert _SQLITE_LOCKED not in stack.log_text(name), f"{name}: {_SQLITE_LOCKED}"
    assert stack.web_answers()


@pytest.mark.fault_case("embedded stack, concurrent use")
def test_embedded_stack_runs_every_task_once_under_concurrent_senders_and_api_clients(
    embedded: EmbeddedStack, figures: Figures
) -> None:
    """SENDERS processes publish TASKS_PER_SENDER tasks each while API_CLIENTS threads create
    agents through the web server (each create commits a row and enqueues a submit task) and a
    third loads pages; beat's poller ticks run throughout. Every task runs exactly once, every
    agent is submitted upstream exactly once, the worker and web server are the processes that
    started (no exit, no restart), no process met "database is locked", and nothing of the run
    is left in the broker's folders."""
    stack = embedded
    pids = {name: process.pid for name, process in stack.processes.items()}
    api = {"Authorization": f"Bearer {stack.setup['key']}", "Connection": "close"}
    agents_page = f"{stack.url}/o/{stack.setup['org']}/agents/"
    cookies = {django_settings.SESSION_COOKIE_NAME: stack.setup["session"]}
    created: list[str] = []
    statuses: list[int] = []  # of every request (list.append is thread-safe)
    done = threading.Event()

    def create_agents(client: int) -> None:
        with httpx.Client(base_url=stack.url, headers=api, timeout=30) as http:
            for number in range(AGENTS_PER_CLIENT):
                while True:
                    response = http.post(
                        "/api/v1/agents", json={"name": f"Stress {client}-{number}", "prompt": "Hi"}
                    )
                    statuses.append(response.status_code)
                    if response.status_code != 429:  # over the key's budget: wait as told
                        break
                    time.sleep(float(response.headers.get("Retry-After", "1")))
                assert response.status_code == 202, response.text[:500]
                created.append(response.json()["id"])

    def load_pages() -> None:
        with httpx.Client(headers={"Connection": "close"}, cookies=cookies, timeout=30) as http:
            while not done.is_set():
                for url in (agents_page, stack.url + "/healthz"):
                    statuses.append(http.get(url).status_code)

    threads = [threading.Thread(target=create_agents, args=(n,)) for n in range(API_CLIENTS)]
    pages = threading.Thread(target=load_pages)
    senders = [stack.send(sender, TASKS_PER_SENDER) for sender in range(SENDERS)]
    for thread in [*threads, pages]:
        thread.start()
    for sender in senders:
        output, _ = sender.communicate(timeout=300)
        assert sender.returncode == 0 and "sent" in output, output[-3000:]
    for thread in threads:
        thread.join(300)
    done.set()
    pages.join(60)
    assert len(created) == API_CLIENTS * AGENTS_PER_CLIENT
    answers = Counter(statuses)
    assert set(answers) == {200, 202} | ({429} & set(answers)), answers

    stress = {
        (STRESS_TASK, f"stress-{s}-{n:04d}")
        for s in range(SENDERS)
        for n in range(TASKS_PER_SENDER)
    }

    def stress_tasks_ran() -> bool:
        return stress <= set(stack.succeeded())

    stack.wait(stress_tasks_ran, timeout=300)
    stack.wait(lambda: stack.shell(_UPSTREAM)["submitting"] == 0, timeout=300)
    runs = stack.succeeded()
    submits = {key: runs[key] for key in runs if key[0] == "agents.tasks.agent_submit"}
    upstream = stack.shell(_UPSTREAM)

    figures.messages = sum(runs.values())
    figures.agents = len(created)
    figures.lost = len(stress - set(runs)) + (len(created) - len(submits))
    figures.duplicated = sum(runs[key] - 1 for key in stress | set(submits))
    figures.notes.append(
        f"{len(stress)} tasks from {SENDERS} processes, {len(created)} API creates, "
        f"{sum(answers.values())} requests answered {dict(answers)}; same PIDs"
    )
    assert all(runs[key] == 1 for key in stress), "a stress task ran twice"
    assert len(submits) == len(created) and set(submits.values()) == {1}
    assert upstream == {
        "submitting": 0,
        "agents": len(created),
        "upstream": len(created),  # one generation each
        "upstream_codes": len(created),
    }
    _assert_still_up(stack, pids)
    # Nothing of the run is left queued: at most a few of beat's periodic ticks, just published.
    periodic = {entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    stack.wait(lambda: set(stack.queued()) <= periodic and len(stack.queued()) <= 3, timeout=30)
    assert not list((stack.celery_dir / "staging").iterdir())
    assert not list((stack.celery_dir / "unreadable").iterdir())
    claims = [path for path in (stack.celery_dir / "claimed").rglob("*") if path.is_file()]
    assert all(path.parent.name.startswith(f"{pids['worker']}@") for path in claims)  # live ones


@pytest.mark.fault_case("embedded stack, unreadable messages")
def test_embedded_worker_sets_unreadable_messages_aside_and_goes_on(
    embedded: EmbeddedStack, figures: Figures
) -> None:
    """An empty message file and a garbage one dropped into the queue (what kombu's own transport
    produced, or a disk that filled up): the worker logs each by file name, moves it to the
    unreadable folder, and runs the tasks sent after them; the same worker and web server are
    still up at the end."""
    stack = embedded
    pids = {name: process.pid for name, process in stack.processes.items()}
    queue = stack.celery_dir / "queue"
    bad = {
        "00000000000000000001_empty.celery.msg": b"",
        "00000000000000000002_garbage.celery.msg": b"\x00\xff{not json",
    }
    for name, content in bad.items():
        (stack.celery_dir / "staging" / name).write_bytes(content)
        os.rename(stack.celery_dir / "staging" / name, queue / name)
    sender = stack.send(0, 20)
    output, _ = sender.communicate(timeout=120)
    assert sender.returncode == 0, output[-3000:]
    stress = {(STRESS_TASK, f"stress-0-{n:04d}") for n in range(20)}
    stack.wait(lambda: stress <= set(stack.succeeded()), timeout=120)

    log = stack.log_text("worker")
    for name in bad:
        assert f"Unreadable message file {name}" in log
    assert sorted(path.name for path in (stack.celery_dir / "unreadable").iterdir()) == sorted(bad)
    assert (stack.celery_dir / "unreadable" / next(iter(bad))).read_bytes() == b""
    assert not set(bad) & {path.name for path in queue.iterdir()}
    runs = stack.succeeded()
    assert all(runs[key] == 1 for key in stress)
    for name, process in stack.processes.items():
        assert process.poll() is None and process.pid == pids[name], name
    assert stack.web_answers()
    figures.faults = len(bad)
    figures.messages = len(stress)
    figures.notes.append("both files logged by name and set aside; same PIDs")
