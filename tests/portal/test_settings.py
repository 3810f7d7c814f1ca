"""Production settings: `check --deploy` passes; without a real key or hosts the app refuses."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROD_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "p" * 20 + "-production-secret-key-that-is-long-and-random-1234567890",
    "DJANGO_ALLOWED_HOSTS": "portal.example.com",
    "FIELD_ENCRYPTION_KEYS": "0YXN8x3YqlKGxHfhCy1AU3Fh5jXy1Q2xbyWmK2QnJ3E=",
    "DATABASE_URL": "sqlite:////tmp/portal-deploy-check.sqlite3",
    # Shared state (nothing connects during `check`).
    "REDIS_URL": "redis://redis.internal:6379/0",
    "CELERY_BROKER_URL": "redis://redis.internal:6379/1",
}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    skip = ("DJANGO_", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "PORTAL_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_settings_pass_check_deploy():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PROD_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    "override,message",
    [
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY must be set"),
        ({"DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY must be set"),
        ({"DJANGO_ALLOWED_HOSTS": ""}, "DJANGO_ALLOWED_HOSTS must be set"),
        ({"FIELD_ENCRYPTION_KEYS": ""}, "FIELD_ENCRYPTION_KEYS must be set"),
    ],
)
def test_without_debug_the_app_refuses_to_start_without_key_or_hosts(override, message):
    result = _manage("check", env={**PROD_ENV, **override})
    assert result.returncode != 0
    assert message in result.stderr


def test_production_cookies_and_headers():
    code = (
        "from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_NAME, s.CSRF_COOKIE_NAME, s.SESSION_COOKIE_SECURE,"
        " s.SECURE_HSTS_SECONDS > 0, s.SECURE_REFERRER_POLICY, s.SECURE_CSP['script-src'])"
    )
    result = _manage("shell", "-c", code, env=PROD_ENV)
    assert result.returncode == 0, result.stderr
    assert "__Host-sessionid __Host-csrftoken True True same-origin" in result.stdout
    assert "'self'" in result.stdout and "nonce" in result.stdout.lower()


@pytest.mark.parametrize(
    "without,code",
    [
        ("CELERY_BROKER_URL", "portal.E001"),  # the embedded file broker
        ("REDIS_URL", "portal.E002"),  # a file cache per host
    ],
)
def test_without_debug_per_host_broker_or_cache_refuses_to_start(without, code):
    env = {key: value for key, value in PROD_ENV.items() if key != without}
    for command in (("check", "--deploy"), ("migrate", "--check")):
        result = _manage(*command, env=env)
        assert result.returncode != 0, command
        assert code in result.stderr
        assert "PORTAL_SINGLE_HOST=true" in result.stderr


def test_single_host_is_an_explicit_choice():
    env = {k: v for k, v in PROD_ENV.items() if k not in {"REDIS_URL", "CELERY_BROKER_URL"}}
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING", env={**env, "PORTAL_SINGLE_HOST": "true"}
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _settings_value(expression: str, env: dict[str, str]) -> str:
    result = _manage(
        "shell", "-c", f"from django.conf import settings as s; print({expression})", env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_site_and_sandbox_urls_follow_the_port_and_host(tmp_path):
    dev = {"DJANGO_DEBUG": "true", "PORTAL_VAR_DIR": str(tmp_path)}
    assert _settings_value("s.SITE_URL, s.SANDBOX_BASE_URL", dev) == (
        "http://127.0.0.1:8000 http://127.0.0.1:8000/sandbox"
    )
    moved = {**dev, "PORTAL_PORT": "8765", "PORTAL_HOST": "localhost"}
    assert _settings_value("s.SITE_URL, s.SANDBOX_BASE_URL", moved) == (
        "http://localhost:8765 http://localhost:8765/sandbox"
    )
    wildcard = {**dev, "PORTAL_PORT": "8765", "PORTAL_HOST": "0.0.0.0"}  # noqa: S104
    assert _settings_value("s.SITE_URL", wildcard) == "http://127.0.0.1:8765"


def test_every_local_state_file_lives_under_the_var_dir(tmp_path):
    env = {"DJANGO_DEBUG": "true", "PORTAL_VAR_DIR": str(tmp_path / "state")}
    paths = _settings_value(
        "s.CELERY_BEAT_SCHEDULE_FILENAME, s.DATABASES['default']['NAME'], s.MEDIA_ROOT,"
        " s.CACHES['default']['LOCATION'], s.CELERY_BROKER_TRANSPORT_OPTIONS['data_folder_in']",
        env,
    ).split()
    assert len(paths) == 5
    for path in paths:
        assert path.startswith(str(tmp_path / "state")), path


def test_the_dev_encryption_key_is_random_kept_under_var_and_not_the_dev_secret(tmp_path):
    """In DEBUG without FIELD_ENCRYPTION_KEYS, the key is generated once and stored (0600) under
    PORTAL_VAR_DIR; it does not derive from the committed dev secret key, which only remains
    able to read what older checkouts encrypted."""
    import base64
    import hashlib

    from cryptography.fernet import Fernet, InvalidToken

    code = (
        "from django.conf import settings as s; from portal import crypto;"
        "print('keys', ','.join(s.FIELD_ENCRYPTION_KEYS), crypto.encrypt('sbx_dev_secret'))"
    )
    env = {
        "DJANGO_DEBUG": "true",
        "PORTAL_VAR_DIR": str(tmp_path / "var"),
        "FIELD_ENCRYPTION_KEYS": "",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    first = _manage("shell", "-c", code, env=env)
    assert first.returncode == 0, first.stderr
    keys, token = first.stdout.split("keys ")[1].split()
    second = _manage("shell", "-c", code, env=env)
    assert (
        second.stdout.split("keys ")[1].split()[0] == keys
    )  # the same key on every start (web and worker)
    stored = (tmp_path / "var" / "field-encryption.key").read_text().strip()
    assert keys.split(",")[0] == stored
    assert (tmp_path / "var" / "field-encryption.key").stat().st_mode & 0o777 == 0o600
    dev_secret = "django-insecure-local-development-key-never-use-in-production"
    derived = base64.urlsafe_b64encode(
        hashlib.sha256(b"field-encryption:" + dev_secret.encode()).digest()
    )
    assert stored.encode() != derived
    with pytest.raises(InvalidToken):
        Fernet(derived).decrypt(token.encode())
    assert Fernet(stored.encode()).decrypt(token.encode()) == b"sbx_dev_secret"
