"""The database unreachable: pages and the API answer 503 with a message and Retry-After
(portal/outage.py), never 500, and answer normally as soon as it is back (no restart)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
from django.db import OperationalError, connection
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import reverse

from organizations import apikeys
from portal import outage
from portal.models import ApiScope, Membership
from tests.conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DatabaseSwitch:
    """Points Django's connection at a closed port, as a stopped server looks to a process;
    `up()` points it back."""

    def __init__(self) -> None:
        self.saved = dict(connection.settings_dict)

    def down(self) -> None:
        if connection.vendor != "postgresql":
            # pytest-django's SQLite test database lives in memory: closing it loses it.
            pytest.skip("needs a database server to stop: run the tests on PostgreSQL")
        connection.close()
        connection.settings_dict.update(HOST="127.0.0.1", PORT=_closed_port())

    def up(self) -> None:
        connection.close()
        connection.settings_dict.update(self.saved)


@pytest.fixture
def database() -> Iterator[DatabaseSwitch]:
    switch = DatabaseSwitch()
    yield switch
    switch.up()


def _api_headers(owner: Membership) -> dict[str, str]:
    issued = apikeys.api_key_create(
        org=owner.organization, name="outage", scopes=[ApiScope.AGENTS_READ], created_by=None
    )
    return {"Authorization": f"Bearer {issued.key}"}


def _timed(call: Callable[[], HttpResponse]) -> tuple[HttpResponse, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_pages_answer_503_with_a_message_while_the_database_is_down_then_200(
    owner: Membership, database: DatabaseSwitch
):
    client = client_for(owner)
    agents = reverse("agent_list", kwargs={"org_slug": owner.organization.slug})
    assert client.get(agents).status_code == 200
    database.down()
    signing_in = {"username": "someone@example.com", "password": "not-checked-now"}
    for name, call in (
        ("agents page", lambda: client.get(agents)),
        ("home", lambda: client.get(reverse("home"))),
        ("sign-in", lambda: Client().post(reverse("login"), signing_in)),
    ):
        response, seconds = _timed(call)
        assert response.status_code == 503, (name, response.status_code)
        assert response["Retry-After"] == str(outage.RETRY_AFTER_SECONDS)
        assert response["Content-Type"].startswith("text/html")
        assert "Temporarily unavailable" in response.text and outage.MESSAGE in response.text
        # It went out through the security middleware like any page.
        assert response["X-Frame-Options"] == "DENY" and "Content-Security-Policy" in response
        assert seconds < 3
    posted = client.post(reverse("agent_new", kwargs={"org_slug": owner.organization.slug}))
    assert posted.status_code == 503

    database.up()
    assert client.get(agents).status_code == 200  # the same process, connected again


def test_api_answers_the_error_envelope_with_503_while_the_database_is_down(
    owner: Membership, database: DatabaseSwitch
):
    headers = _api_headers(owner)
    client = Client()
    assert client.get("/api/v1/agents", headers=headers).status_code == 200
    database.down()
    for method, path in (("get", "/api/v1/agents"), ("post", "/api/v1/agents")):
        response = getattr(client, method)(
            path, headers=headers, data={"name": "A"}, content_type="application/json"
        )
        assert response.status_code == 503, response.content
        assert response.json() == {
            "error": {
                "code": "service_unavailable",
                "message": outage.MESSAGE,
                "details": {"retry_after": outage.RETRY_AFTER_SECONDS},
            }
        }
        assert response["Retry-After"] == str(outage.RETRY_AFTER_SECONDS)
    database.up()
    assert client.get("/api/v1/agents", headers=headers).status_code == 200


def test_readyz_reports_the_database_and_healthz_still_answers(database: DatabaseSwitch):
    client = Client()
    database.down()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["ok"] is False
    assert client.get("/healthz").status_code == 200


class _SavesAfterTheView:
    """Stands for middleware that writes after the view (a session save) when the database
    has just gone away: Django has turned its error into a 500 before the outage middleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        self.get_response(request)
        raise OperationalError("server closed the connection unexpectedly")


def test_an_outage_raised_by_a_middleware_is_a_503_too(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}._SavesAfterTheView"]
    response = Client(raise_request_exception=False).get("/login/")
    assert response.status_code == 503 and outage.MESSAGE in response.text
    assert response["Retry-After"] == str(outage.RETRY_AFTER_SECONDS)
    assert response["X-Frame-Options"] == "DENY"  # kept from the response it replaced

    api = Client(raise_request_exception=False).get("/api/v1/")
    assert api.status_code == 503 and api.json()["error"]["code"] == "service_unavailable"


class _Buggy:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raise RuntimeError("a bug, not an outage")


def test_other_errors_stay_500(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}._Buggy"]
    response = Client(raise_request_exception=False).get("/login/")
    assert response.status_code == 500 and "Retry-After" not in response
