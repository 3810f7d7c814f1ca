"""`make run` as a user runs it: on a port and a state folder of their choosing, stopped by one
signal with nothing left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.worker


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children() -> dict[int, int]:
    """pid -> parent pid of every process on the machine."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: read after the last ')'.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _descendants(pid: int) -> set[int]:
    parents = _children()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _run_env(var_dir: Path, port: int) -> dict[str, str]:
    drop = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("DJANGO_")}
    env.update(PORTAL_VAR_DIR=str(var_dir), PORTAL_PORT=str(port))
    return env


@pytest.mark.parametrize(
    "how",
    ["SIGTERM to make", "Ctrl-C (SIGINT to the foreground group)", "hang-up of the terminal"],
)
def test_make_run_follows_the_port_and_var_dir_and_stops_on_one_signal(tmp_path, how):
    port = _free_port()
    var_dir = tmp_path / "state"
    log = (tmp_path / "run.log").open("w")
    make = subprocess.Popen(
        ["make", "--no-print-directory", "run"],  # noqa: S607
        cwd=ROOT,
        env=_run_env(var_dir, port),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group, as a terminal's foreground job
    )
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                if page.status_code == 200 and (var_dir / "celerybeat-schedule").exists():
                    break
            except httpx.HTTPError:
                pass
            assert make.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.5)
        else:
            pytest.fail("make run did not serve the page:\n" + (tmp_path / "run.log").read_text())
        output = (tmp_path / "run.log").read_text()
        # The printed address and the sandbox URL follow the port.
        assert f"http://127.0.0.1:{port}/" in output
        started = _descendants(make.pid)
        assert len(started) >= 4  # the runner, honcho, the web server and the worker at least
        if how == "SIGTERM to make":
            make.send_signal(signal.SIGTERM)
        elif how.startswith("Ctrl-C"):
            os.killpg(make.pid, signal.SIGINT)
        else:
            os.killpg(make.pid, signal.SIGHUP)
        deadline = time.monotonic() + 60
        while _alive(started | {make.pid}) and time.monotonic() < deadline:
            make.poll()
            time.sleep(0.5)
        left = _alive(started | {make.pid})
        assert not left, f"still running after {how}: {left}"
    finally:
        for pid in _alive(started):
            os.kill(pid, signal.SIGKILL)
        if make.poll() is None:
            make.kill()
        log.close()
