"""The production configuration, outside Docker: what the image runs, on this machine.

A fresh virtual environment gets requirements/prod.txt only (wheels cached under var/); then,
with production settings (DJANGO_DEBUG=false, JSON logs, PostgreSQL and Redis): collectstatic
with the Dockerfile's build-time values, `check --deploy`, migrate on a new database, gunicorn
with docker/gunicorn.conf.py, a Celery worker and beat. The test logs in over HTTP (as a
TLS-terminating proxy would forward it: X-Forwarded-Proto, `__Host-` cookies), checks /readyz,
the compose health checks of each role, the JSON logs, and a graceful stop of web and worker.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
HOST = "portal.example.com"
ORIGIN = f"https://{HOST}"
PIP_CACHE = ROOT / "var" / "pip-cache"


def _dockerfile_build_env() -> dict[str, str]:
    """The throwaway values the Dockerfile gives collectstatic (so this test runs that step)."""
    text = (ROOT / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if "collectstatic" in line)
    return dict(re.findall(r"([A-Z_]+)=(\S+)", line.split("python manage.py")[0]))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(cmd: list[str], env: dict[str, str], timeout: int = 180) -> str:
    result = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{cmd}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def prod_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("prod-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, "--cache-dir", str(PIP_CACHE), "-r", "requirements/prod.txt"], os.environ.copy())
    # Nothing from the development requirements leaked in.
    freeze = _run([str(venv / "bin" / "python"), "-m", "pip", "freeze"], os.environ.copy())
    assert "gunicorn==" in freeze and "pytest" not in freeze
    return venv


@pytest.fixture(scope="module")
def prod_database() -> Iterator[str]:
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal")
    parts = urlsplit(base)
    assert parts.scheme.startswith("postgres"), "this test needs PostgreSQL (DATABASE_URL)"
    name = f"portal_prodcheck_{uuid.uuid4().hex[:10]}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _prod_env(venv: Path, database_url: str, tmp: Path) -> dict[str, str]:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        {
            "PATH": f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "prod-check-" + uuid.uuid4().hex + uuid.uuid4().hex,
            "DJANGO_ALLOWED_HOSTS": HOST,
            "FIELD_ENCRYPTION_KEYS": "0YXN8x3YqlKGxHfhCy1AU3Fh5jXy1Q2xbyWmK2QnJ3E=",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "PORTAL_VAR_DIR": str(tmp / "var"),
            "STATIC_ROOT": str(tmp / "static"),
            "MEDIA_ROOT": str(tmp / "media"),
            "AGENT_POLL_INTERVAL": "1",
        }
    )
    return env


class Stack:
    """gunicorn, a worker and beat as child processes, with their logs in files."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, role: str, cmd: list[str], extra_env: dict[str, str] | None = None) -> None:
        log = (self.tmp / f"{role}.log").open("wb")
        self.procs[role] = subprocess.Popen(
            cmd, cwd=ROOT, env={**self.env, **(extra_env or {})}, stdout=log, stderr=log
        )

    def log(self, role: str) -> str:
        return (self.tmp / f"{role}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def _json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _wait_for(predicate, timeout: float, what: str, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for role, proc in stack.procs.items():
            assert proc.poll() is None, f"{role} exited early:\n{stack.log(role)[-3000:]}"
        time.sleep(0.3)
    logs = "\n".join(f"--- {r}\n{stack.log(r)[-2000:]}" for r in stack.procs)
    pytest.fail(f"timed out waiting for {what}\n{logs}")


def _cookies(response: httpx.Response, jar: dict[str, str]) -> None:
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        jar[name] = rest.split(";", 1)[0]
        assert "Secure" in header and "Path=/" in header, header


def _cookie_header(jar: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def test_production_stack_outside_docker(prod_venv, prod_database, tmp_path):
    env = _prod_env(prod_venv, prod_database, tmp_path)
    python = str(prod_venv / "bin" / "python")

    # The image's build step: collectstatic with the Dockerfile's throwaway values.
    build_env = {**env, **_dockerfile_build_env(), "STATIC_ROOT": str(tmp_path / "static")}
    build_env["PORTAL_VAR_DIR"] = str(tmp_path / "build-var")
    _run([python, "manage.py", "collectstatic", "--noinput"], build_env)
    assert list((tmp_path / "static").glob("staticfiles.json")), "no manifest: not production"

    out = _run([python, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert "no issues" in out
    _run([python, "manage.py", "migrate", "--noinput"], env)
    password = "Prod-check-" + uuid.uuid4().hex
    slug = _run(
        [
            python,
            "manage.py",
            "create_organization",
            "--name",
            "Prod Check",
            "--owner-email",
            "owner@prodcheck.test",
            "--owner-password",
            password,
        ],
        env,
    ).split()[-1]

    port = _free_port()
    worker_name = f"prodcheck-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    schedule = tmp_path / "celerybeat-schedule"
    stack = Stack(env, tmp_path)
    try:
        stack.start(
            "web",
            [
                str(prod_venv / "bin" / "gunicorn"),
                "--config",
                "docker/gunicorn.conf.py",
                "portal.wsgi",
            ],
            {"GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2"},
        )
        stack.start(
            "worker",
            [
                str(prod_venv / "bin" / "celery"),
                "--app=portal",
                "worker",
                "--loglevel=INFO",
                "--concurrency=2",
                "--without-mingle",
                "--without-gossip",
                "-n",
                worker_name,
            ],
        )
        stack.start(
            "beat",
            [
                str(prod_venv / "bin" / "celery"),
                "--app=portal",
                "beat",
                "--loglevel=INFO",
                f"--schedule={schedule}",
            ],
        )
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, timeout=10, follow_redirects=False)

        def ready() -> bool:
            try:
                return client.get("/readyz").status_code == 200
            except httpx.TransportError:
                return False

        _wait_for(ready, 60, "/readyz to answer 200", stack)
        body = client.get("/readyz").json()
        assert body["status"] == "ok"
        assert set(body["checks"]) == {"database", "cache", "broker", "migrations"}
        assert all(check["ok"] for check in body["checks"].values())
        # Probes by IP over plain HTTP are answered; everything else is HTTPS-only.
        assert client.get("/healthz").json() == {"status": "ok"}
        redirect = client.get("/login/", headers={"Host": HOST})
        assert redirect.status_code == 301
        assert redirect.headers["location"] == f"https://{HOST}/login/"

        # Log in as a browser behind the TLS proxy would.
        proxy = {"Host": HOST, "X-Forwarded-Proto": "https"}
        jar: dict[str, str] = {}
        page = client.get("/login/", headers=proxy)
        assert page.status_code == 200
        assert "strict-transport-security" in page.headers
        _cookies(page, jar)
        assert "__Host-csrftoken" in jar
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert csrf, page.text[:500]
        login = client.post(
            "/login/",
            headers={
                **proxy,
                "Origin": ORIGIN,
                "Referer": f"{ORIGIN}/login/",
                "Cookie": _cookie_header(jar),
            },
            data={
                "csrfmiddlewaretoken": csrf.group(1),
                "username": "owner@prodcheck.test",
                "password": password,
            },
        )
        assert login.status_code == 302, login.text[:2000]
        _cookies(login, jar)
        assert "__Host-sessionid" in jar
        org_page = client.get(f"/o/{slug}/", headers={**proxy, "Cookie": _cookie_header(jar)})
        assert org_page.status_code == 200
        assert "Prod Check" in org_page.text
        request_id = org_page.headers["X-Request-ID"]

        # The web log: JSON lines with the context of the logged-in request, and no secrets.
        def logged() -> bool:
            return any(e.get("request_id") == request_id for e in _json_lines(stack.log("web")))

        _wait_for(logged, 10, "the request's log line", stack)
        entry = next(e for e in _json_lines(stack.log("web")) if e.get("request_id") == request_id)
        assert entry["org"] == slug and entry["status"] == 200 and entry["user_id"]
        assert entry["logger"] == "portal.request" and entry["path"] == f"/o/{slug}/"
        assert password not in stack.log("web") and jar["__Host-sessionid"] not in stack.log("web")

        # The compose health checks of each role pass against these processes.
        checks = {
            "web": {"HEALTHCHECK_URL": base},
            "live": {"HEALTHCHECK_URL": base},
            "worker": {"CELERY_WORKER_NAME": worker_name},
            "beat": {"CELERY_BEAT_SCHEDULE_FILE": str(schedule)},
        }
        for role, extra in checks.items():
            _run([python, "docker/healthcheck.py", role], {**env, **extra}, timeout=60)

        # Beat schedules the poller; the worker runs it and logs JSON with the task's context.
        def task_logged() -> bool:
            return any(
                e.get("task_id") and e.get("task") == "agents.tasks.agents_poll_tick"
                for e in _json_lines(stack.log("worker"))
            )

        _wait_for(task_logged, 30, "a poller tick logged by the worker", stack)

        # Graceful stop: SIGTERM, both exit cleanly.
        for role in ("web", "worker"):
            stack.procs[role].send_signal(signal.SIGTERM)
        for role in ("web", "worker"):
            assert stack.procs[role].wait(timeout=40) == 0, stack.log(role)[-3000:]
    finally:
        stack.stop_all()
