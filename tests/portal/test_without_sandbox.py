"""A portal with the sandbox off: the app is not installed, nothing imports it, and the portal still
starts, migrates, passes its checks and creates organizations (with a Test-mode secret the sandbox
would accept, minted without it)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Imports every module of the portal's own apps (not migrations), then creates an organization.
_PROBE = """
import importlib, pkgutil, re, sys
from django.conf import settings
from django.urls import Resolver404, resolve

assert "sandbox" not in settings.INSTALLED_APPS, settings.INSTALLED_APPS
assert "sandbox-advance" not in settings.CELERY_BEAT_SCHEDULE
for package in ("portal", "activity", "organizations", "agents", "sessions", "interfaces"):
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        if ".migrations" not in module.name and not module.name.endswith((".wsgi", ".asgi")):
            importlib.import_module(module.name)
try:
    resolve("/sandbox/v1/me")
except Resolver404:
    pass
else:
    raise AssertionError("/sandbox/ is routed with the sandbox off")

from organizations import services
from organizations import connections
user = services.user_create(email="owner@example.com", password=None)
org = services.organization_create(name="No Sandbox", owner=user)
secret = connections.connection_get(org=org).sandbox_secret
assert re.fullmatch(r"sbx_[A-Za-z0-9_-]{40}", secret), "not of the sandbox's form"
loaded = sorted(name for name in sys.modules if name == "sandbox" or name.startswith("sandbox."))
assert not loaded, loaded
print("probe ok")
"""


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    skip = ("DJANGO_", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "PORTAL_", "SANDBOX_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_portal_with_the_sandbox_off_starts_migrates_and_runs_without_it(tmp_path):
    env = {
        "DJANGO_DEBUG": "false",
        "SANDBOX_ENABLED": "false",
        "DJANGO_SECRET_KEY": "s" * 20 + "-production-secret-key-that-is-long-and-random-1234567890",
        "DJANGO_ALLOWED_HOSTS": "portal.example.com",
        "FIELD_ENCRYPTION_KEYS": "0YXN8x3YqlKGxHfhCy1AU3Fh5jXy1Q2xbyWmK2QnJ3E=",
        # One host on the embedded defaults: nothing to connect to but a throwaway SQLite file.
        "PORTAL_SINGLE_HOST": "true",
        "PORTAL_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    for command in (
        ("check", "--fail-level", "WARNING"),
        ("check", "--deploy", "--fail-level", "WARNING"),
        ("migrate", "--noinput"),
        ("shell", "-c", _PROBE),
    ):
        result = _manage(*command, env=env)
        output = result.stdout[-2000:] + result.stderr[-3000:]
        assert result.returncode == 0, f"{command[:2]}: {output}"
    assert "probe ok" in result.stdout
    tables = _manage(
        "shell",
        "-c",
        "from django.db import connection; print(sorted(connection.introspection.table_names()))",
        env=env,
    )
    assert "portal_bithumanconnection" in tables.stdout
    assert "sandbox_" not in tables.stdout  # its migrations did not run
