"""Request bodies: only the routes that take media accept large ones; every other route refuses
a body over REQUEST_BODY_MAX_SIZE with 413 from its Content-Length, before reading a byte of it
(so before CSRF, sessions or authentication look at it)."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from agents.models import Agent
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

TWO_MIB = 2 * 1024 * 1024


class UnreadableBody:
    """A request stream that fails the test if anything reads it."""

    read_from = False

    def read(self, *args, **kwargs):
        UnreadableBody.read_from = True
        raise AssertionError("the body was read")

    readline = read

    def __iter__(self):
        return self


def _huge(client, method, path, *, length=TWO_MIB, content_type="application/json", **headers):
    """A request declaring `length` bytes whose body must never be read."""
    UnreadableBody.read_from = False
    environ = {
        "CONTENT_LENGTH": str(length),
        "CONTENT_TYPE": content_type,
        "wsgi.input": UnreadableBody(),
    }
    return client.generic(method, path, b"", content_type, headers=headers, **environ)


def test_the_settings_are_small_by_default_and_large_only_for_media(settings):
    assert settings.REQUEST_BODY_MAX_SIZE <= 1024 * 1024
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE >= 80 * 1024 * 1024


@pytest.mark.parametrize(
    "path", ["/login/", "/signup/", "/webhooks/bithuman/anything/", "/o/acme/members/invite/"]
)
def test_pages_refuse_a_large_body_unread_before_authentication(org, path):
    response = _huge(Client(), "POST", path, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413
    assert not UnreadableBody.read_from
    assert "Request too large" in response.content.decode()
    assert response["Content-Type"].startswith("text/html")


def test_a_member_posting_a_large_form_gets_the_page(org, admin):
    response = _huge(
        client_for(admin),
        "POST",
        reverse("member_invite", args=[org.slug]),
        content_type="multipart/form-data; boundary=x",
    )
    assert response.status_code == 413 and not UnreadableBody.read_from
    assert "1.0 MB at most" in response.content.decode()


@pytest.mark.parametrize(
    "method,path",
    [
        ("PATCH", "/api/v1/agents/00000000-0000-0000-0000-000000000000"),
        ("POST", "/api/v1/sessions/00000000-0000-0000-0000-000000000000/speak"),
        ("POST", "/api/v1/nope"),
    ],
)
def test_the_api_refuses_a_large_body_in_its_envelope_unread_even_without_a_key(method, path):
    response = _huge(Client(), method, path)
    assert response.status_code == 413 and not UnreadableBody.read_from
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"]["limit_bytes"] == 1024 * 1024


def test_media_routes_still_refuse_beyond_the_large_limit_unread(org, settings):
    api = ApiClient(make_key(org))
    response = _huge(
        api.client,
        "POST",
        "/api/v1/agents",
        length=settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1,
        **api.headers,
    )
    assert response.status_code == 413 and not UnreadableBody.read_from
    assert response.json()["error"]["details"]["limit_bytes"] == (
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    )


def test_the_api_create_accepts_a_body_larger_than_the_small_limit(org):
    """2 MiB of JSON (whitespace padding standing for base64 media) on the media route."""
    api = ApiClient(make_key(org))
    body = '{"name": "Padded", "prompt": "A calm guide"' + " " * TWO_MIB + "}"
    response = api.client.post(
        "/api/v1/agents", body, content_type="application/json", headers=api.headers
    )
    assert response.status_code == 202, response.content[:300]
    assert Agent.objects.filter(name="Padded").exists()
    # The same body elsewhere in the API is refused.
    other = api.client.patch(
        f"/api/v1/agents/{response.json()['id']}",
        json.dumps({"system_prompt": "x"}) + " " * TWO_MIB,
        content_type="application/json",
        headers=api.headers,
    )
    assert other.status_code == 413


def test_the_new_agent_form_accepts_a_large_upload(org, member):
    """The form's multipart body (here 2 MiB of padding in a field) is not refused by size."""
    response = client_for(member).post(
        reverse("agent_new", args=[org.slug]),
        {"name": "Big", "system_prompt": "p" * 9000, "padding": "x" * TWO_MIB},
    )
    assert response.status_code != 413
