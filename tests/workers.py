"""What tests that start real Celery worker processes need: the services, named for them."""

from __future__ import annotations

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
