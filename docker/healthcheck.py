"""Container health checks, one per role (used by docker/compose.yaml and the Dockerfile).

    python docker/healthcheck.py web      # GET /readyz on this container's gunicorn: 200?
    python docker/healthcheck.py live     # GET /healthz: the process answers
    python docker/healthcheck.py worker   # this container's Celery worker answers a ping
    python docker/healthcheck.py beat     # beat wrote its schedule file recently

Exit status 0 means healthy. Standard library only, except the worker check (Celery).
"""

from __future__ import annotations

import glob
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request

WEB_URL = os.environ.get("HEALTHCHECK_URL", "http://127.0.0.1:8000")
BEAT_SCHEDULE = os.environ.get("CELERY_BEAT_SCHEDULE_FILE", "/var/lib/portal/celerybeat-schedule")
# Beat saves its schedule at least every 3 minutes (Celery's default sync interval).
BEAT_MAX_AGE_SECONDS = int(os.environ.get("BEAT_HEALTH_MAX_AGE", "300"))


def http_ok(path: str) -> bool:
    try:
        with urllib.request.urlopen(WEB_URL + path, timeout=8) as response:  # noqa: S310
            body = response.read().decode()
            return response.status == 200 and json.loads(body).get("status") == "ok"
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"{path}: {error}", file=sys.stderr)
        return False


def worker_ok() -> bool:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    sys.path.insert(0, os.getcwd())
    from portal.celery import app

    destination = os.environ.get("CELERY_WORKER_NAME", f"celery@{socket.gethostname()}")
    replies = app.control.ping(destination=[destination], timeout=5.0)
    if not replies:
        print(f"no ping reply from {destination}", file=sys.stderr)
    return bool(replies)


def beat_ok() -> bool:
    files = glob.glob(BEAT_SCHEDULE + "*")
    if not files:
        print(f"no schedule file {BEAT_SCHEDULE}*", file=sys.stderr)
        return False
    age = time.time() - max(os.path.getmtime(f) for f in files)
    if age > BEAT_MAX_AGE_SECONDS:
        print(f"schedule file not written for {age:.0f} s", file=sys.stderr)
    return age <= BEAT_MAX_AGE_SECONDS


CHECKS = {
    "web": lambda: http_ok("/readyz"),
    "live": lambda: http_ok("/healthz"),
    "worker": worker_ok,
    "beat": beat_ok,
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CHECKS:
        sys.exit(f"usage: healthcheck.py {{{','.join(CHECKS)}}}")
    sys.exit(0 if CHECKS[sys.argv[1]]() else 1)
