"""The real stack the benchmarks run against: a dedicated PostgreSQL database, Redis db 11, a
Celery worker (and beat when a benchmark needs ticks on schedule), and gunicorn serving the portal
with the sandbox mounted. Every process gets the same environment (`bench_env`)."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("BENCH_VAR", str(ROOT / "var" / "bench")))
PY = sys.executable
PORT = int(os.environ.get("BENCH_PORT", "8765"))
BASE = f"http://127.0.0.1:{PORT}"
DATABASE = os.environ.get("BENCH_DATABASE", "portal_bench")
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/11")
# gunicorn: one process per core, threads so the sandbox's 50 ms sleeps overlap.
GUNICORN_WORKERS = int(os.environ.get("BENCH_GUNICORN_WORKERS", "2"))
GUNICORN_THREADS = int(os.environ.get("BENCH_GUNICORN_THREADS", "20"))
POLL_CONCURRENCY = int(os.environ.get("BENCH_POLL_CONCURRENCY", "100"))  # the default


def bench_env() -> dict[str, str]:
    """Production-like settings (DEBUG off, manifest static files, Redis, PostgreSQL), plain HTTP
    on loopback, the sandbox on with 50 ms latency, and the API's per-key limit lifted (the API
    benchmark measures the server, not the limiter)."""
    secret = hashlib.sha256(b"portal-bench").hexdigest() * 2
    fernet = base64.urlsafe_b64encode(hashlib.sha256(b"portal-bench-fernet").digest()).decode()
    env = {
        **os.environ,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secret,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_HSTS_SECONDS": "0",
        "FIELD_ENCRYPTION_KEYS": fernet,
        "DATABASE_URL": f"{PG}/{DATABASE}",
        "REDIS_URL": REDIS,
        "CELERY_BROKER_URL": REDIS,
        "PORTAL_VAR_DIR": str(VAR),
        "PORTAL_SITE_URL": BASE,
        "SANDBOX_ENABLED": "true",
        "SANDBOX_BASE_URL": f"{BASE}/sandbox",
        "BITHUMAN_API_URL": os.environ.get("BENCH_BITHUMAN_API_URL", f"{BASE}/sandbox"),
        "SANDBOX_LATENCY_MS": os.environ.get("BENCH_SANDBOX_LATENCY_MS", "50"),
        "SANDBOX_WEBHOOK_BACKOFF": "1",
        "API_RATE_LIMIT_PER_MINUTE": "100000000",
        "AGENT_POLL_CONCURRENCY": str(POLL_CONCURRENCY),
        "AXES_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def django_setup() -> None:
    os.environ.update(bench_env())
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    import django

    django.setup()


def _manage(*args: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=bench_env(), check=True)


def database_reset() -> None:
    """Drop and create the benchmark database, migrate, collect static files; flush Redis db 11."""
    admin = f"{PG}/postgres"
    for sql in (f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)", f"CREATE DATABASE {DATABASE}"):
        subprocess.run(["psql", admin, "-q", "-c", sql], check=True)
    subprocess.run(["redis-cli", "-u", REDIS, "FLUSHDB"], check=True, stdout=subprocess.DEVNULL)
    VAR.mkdir(parents=True, exist_ok=True)
    _manage("migrate", "--noinput", "-v", "0")
    _manage("collectstatic", "--noinput", "-v", "0")


class Process:
    """A child process in its own process group, stopped (with its children) by `stop`."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = (VAR / f"{name}.log").open("w")
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**bench_env(), **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pids(self) -> list[int]:
        """The process and its descendants."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                children.setdefault(int(fields[1]), []).append(int(entry.name))
        found, todo = [], [self.popen.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self.log.close()


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / _TICKS


def gunicorn_start() -> Process:
    process = Process(
        "gunicorn",
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            "portal.wsgi",
            "--bind",
            f"127.0.0.1:{PORT}",
            "--workers",
            str(GUNICORN_WORKERS),
            "--worker-class",
            "gthread",
            "--threads",
            str(GUNICORN_THREADS),
            "--backlog",
            "2048",
            "--timeout",
            "120",
        ],
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{BASE}/login/", timeout=2).status_code < 500:
                return process
        except httpx.HTTPError:
            pass
        if process.popen.poll() is not None:
            break
        time.sleep(0.3)
    process.stop()
    raise RuntimeError(f"gunicorn did not start: see {VAR / 'gunicorn.log'}")


def worker_start(
    concurrency: int = 2, *, name: str = "worker", env: dict[str, str] | None = None
) -> Process:
    process = Process(
        name,
        [
            str(ROOT / ".venv" / "bin" / "celery"),
            "-A",
            "portal",
            "worker",
            "-I",
            "bench.tasks",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
        ],
        env,
    )
    time.sleep(4)
    return process


def beat_start(*, name: str = "beat", env: dict[str, str] | None = None) -> Process:
    return Process(
        name,
        [
            str(ROOT / ".venv" / "bin" / "celery"),
            "-A",
            "portal",
            "beat",
            "--loglevel",
            "WARNING",
            "--schedule",
            str(VAR / f"{name}-schedule"),
        ],
        env,
    )


@contextmanager
def running(*processes: Process) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            process.stop()


def queue_length() -> str:
    """Tasks waiting in the broker's queue and taken but not acknowledged (what a benchmark
    left behind would make the next one pay for)."""
    import redis

    client = redis.Redis.from_url(REDIS)
    return f"{client.llen('celery')} queued, {client.hlen('unacked')} unacknowledged"
