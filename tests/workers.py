"""What tests that start real Celery worker processes need: the services, named for them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection


def redis_urls(*, broker_db: int, who: str) -> tuple[str, str]:
    """(cache URL, broker URL on `broker_db`); fails the test, with the reason, without Redis."""
    url = django_settings.REDIS_URL
    if not url:
        pytest.fail(
            f"{who} need Redis as broker and shared cache: set REDIS_URL (e.g. "
            "redis://127.0.0.1:6379/14; `make test` and `make test-faults` do when Redis runs "
            "on 127.0.0.1:6379)."
        )
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        pytest.fail(f"{who} need Redis, and {url} does not answer: {error}")
    return url, urlunsplit(urlsplit(url)._replace(path=f"/{broker_db}"))


def database_url_for_workers(*, who: str) -> str:
    """pytest-django's test database (`test_` + the configured name), for other processes."""
    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.fail(
            f"{who} need PostgreSQL: worker processes cannot share this test database "
            f"({db['ENGINE']}). Set DATABASE_URL to a PostgreSQL server."
        )
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    return f"postgres://{credentials}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


# --- Real `celery -A portal worker` processes ---------------------------------------------------

BASE_DIR = Path(__file__).resolve().parents[1]


@dataclass
class Worker:
    """A `celery -A portal worker` process leading its own process group (pool and beat)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker, its pool processes and its beat (the group it leads)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> None:
        """SIGTERM to the worker's main process only: Celery's warm shutdown."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def shutdown(self) -> None:
        """A graceful stop (what a deploy does): SIGTERM to the main process, then wait."""
        self.terminate()
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        # A pool or beat process forked while the group was stopping missed the signal: none may
        # outlive its test (it would go on consuming the shared broker's tasks).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def celery_worker(name: str, *, env: dict[str, str], log: Path, beat: bool = True) -> Worker:
    """Start `celery -A portal worker` (with beat unless told otherwise), logging to `log`."""
    command = [sys.executable, "-m", "celery", "-A", "portal", "worker"]
    if beat:
        # The in-memory scheduler: the persistent one's shelve (dbm.sqlite3 on Python 3.13)
        # intermittently fails with "locking protocol" when beats start and die quickly.
        command += ["--beat", "--scheduler", "celery.beat:Scheduler"]
    command += ["--loglevel", "INFO", "--concurrency", "2"]
    command += ["--hostname", f"{name}-{uuid.uuid4().hex[:8]}@%h"]
    command += ["--without-gossip", "--without-mingle"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=BASE_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to kill it and its children
        )
    return Worker(name=name, process=process, log=log)
