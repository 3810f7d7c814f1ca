"""/healthz and /readyz: JSON, each check's result, 503 when a dependency is missing, and
answered to probes by IP over plain HTTP even with production host and HTTPS settings."""

import pytest
from django.db import OperationalError
from django.test import Client

from portal import health
from portal.celery import app as celery_app


@pytest.fixture(autouse=True)
def _fresh_migration_state(monkeypatch):
    monkeypatch.setattr(health, "_migrations_applied", False)


def test_healthz_answers_without_touching_any_dependency(client):
    # No database access is allowed in this test: a query would raise.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_reports_every_check(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "broker", "migrations"}
    for result in body["checks"].values():
        assert result["ok"] is True and result["ms"] >= 0


@pytest.mark.django_db
def test_readyz_is_503_when_the_broker_is_unreachable(client, monkeypatch):
    # A Redis broker as the settings configure one (its URL and transport), nobody listening.
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    monkeypatch.setitem(celery_app.conf, "broker_transport", "portal.celery:RedisTransport")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    # The error's class only: no connection string in the answer.
    assert "127.0.0.1" not in response.content.decode()


@pytest.mark.django_db
def test_readyz_is_503_when_the_cache_is_unreachable(client, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["cache"]["ok"] is False


@pytest.mark.django_db
def test_readyz_is_503_while_migrations_are_pending(client, monkeypatch):
    monkeypatch.setattr(
        health.MigrationExecutor, "migration_plan", lambda self, targets: [("pending", False)]
    )
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == {
        "ok": False,
        "error": "1 migrations not applied",
        "ms": response.json()["checks"]["migrations"]["ms"],
    }


@pytest.mark.django_db
def test_readyz_is_503_when_the_database_is_down(client, monkeypatch):
    def broken():
        raise OperationalError("could not connect to host db.internal")

    monkeypatch.setattr(health.connection, "cursor", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {
        "ok": False,
        "error": "OperationalError",
        "ms": response.json()["checks"]["database"]["ms"],
    }
    assert "db.internal" not in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_by_ip_over_http_pass_host_and_https_checks(settings, path):
    settings.ALLOWED_HOSTS = ["portal.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    probe = Client(HTTP_HOST="10.0.3.7:8000")
    assert probe.get(path).status_code == 200
    # Any other page from that Host is refused as usual.
    assert probe.get("/login/").status_code == 400


def test_other_methods_and_paths_go_through_the_normal_stack(client):
    assert client.post("/healthz").status_code == 405
    assert client.get("/healthz/").status_code == 404
