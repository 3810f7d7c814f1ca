"""The embedded default database (SQLite, portal/settings.py) under concurrent writers.

Several processes, as the web server, the worker's pool and beat are, each run transactions that
read a counter and then write it back. With the settings' options (WAL, busy timeout, IMMEDIATE
transactions) none fails with "database is locked" and no increment is lost. Without
`transaction_mode: IMMEDIATE` SQLite fails such a transaction at once whenever another process
committed between its read and its write.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.agents.test_poller import wait_for

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 3
INCREMENTS = 50

# argv: increments, and a folder: each writer marks itself ready there, then waits for "go" to
# appear, so they all start at once (Django's start-up takes seconds on a busy machine; started
# one by one, the writers would not overlap).
_WRITER = """
import os, sys, time
import django
django.setup()
from django.db import connection, transaction

open(os.path.join(sys.argv[2], f"ready.{os.getpid()}"), "w").close()
while not os.path.exists(os.path.join(sys.argv[2], "go")):
    time.sleep(0.01)
for _ in range(int(sys.argv[1])):
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT n FROM counter")
            (n,) = cursor.fetchone()
            cursor.execute("UPDATE counter SET n = %s", [n + 1])
with connection.cursor() as cursor:
    cursor.execute("PRAGMA journal_mode")
    print("done", cursor.fetchone()[0])
"""


def _embedded_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PORTAL_VAR_DIR")}
    return {
        **env,
        "DJANGO_DEBUG": "true",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PORTAL_VAR_DIR": str(var_dir),
    }


def test_concurrent_read_then_write_transactions_neither_fail_nor_lose_writes(tmp_path: Path):
    env = _embedded_env(tmp_path)
    database = tmp_path / "portal.sqlite3"  # the settings' default under PORTAL_VAR_DIR
    with contextlib.closing(sqlite3.connect(database)) as setup, setup:
        setup.execute("CREATE TABLE counter (n integer NOT NULL)")
        setup.execute("INSERT INTO counter VALUES (0)")
    start = tmp_path / "start"
    start.mkdir()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(INCREMENTS), str(start)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(WRITERS)
    ]
    wait_for(lambda: len(list(start.glob("ready.*"))) == WRITERS, timeout=120, step=0.05)
    (start / "go").touch()
    outputs = [writer.communicate(timeout=120)[0] for writer in writers]
    for writer, output in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, output[-2000:]  # "database is locked" would end here
        assert "done wal" in output  # through Django's connection: the settings' journal
    with contextlib.closing(sqlite3.connect(database)) as check:
        assert check.execute("SELECT n FROM counter").fetchone() == (WRITERS * INCREMENTS,)
