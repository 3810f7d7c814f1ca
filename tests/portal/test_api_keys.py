"""API key management: created by admins, shown once, stored hashed, listed masked, revocable;
and the operator command."""

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from portal.models import ApiKey, token_hash
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def _create(client, org, **data):
    body = {"name": "CRM", "scopes": ["agents:read", "agents:write"], **data}
    return client.post(reverse("api_key_create", args=[org.slug]), body, follow=True)


def test_admin_creates_a_key_shown_once_and_stored_hashed(org, admin):
    client = client_for(admin)
    page = _create(client, org).content.decode()
    key = re.search(r'id="new-api-key">(bhp_[A-Za-z0-9_-]{43})<', page).group(1)
    stored = ApiKey.objects.get()
    assert stored.key_hash == token_hash(key) and key not in stored.key_hash
    assert stored.prefix == key[:12] and stored.last4 == key[-4:]
    assert stored.scopes == ["agents:read", "agents:write"] and stored.created_by == admin.user
    again = client.get(reverse("org_settings", args=[org.slug])).content.decode()
    assert key not in again  # shown once
    assert f"{key[:12]}…{key[-4:]}" in again
    api = Client(headers={"Authorization": f"Bearer {key}"})
    assert api.get("/api/v1/organization").status_code == 200


def test_bad_key_form_is_a_field_error(org, admin):
    response = client_for(admin).post(
        reverse("api_key_create", args=[org.slug]), {"name": "", "scopes": []}
    )
    assert response.status_code == 400
    errors = response.context["api_key_form"].errors
    assert "name" in errors and "scopes" in errors
    assert not ApiKey.objects.exists()


def test_revoke_takes_effect_on_the_next_request(org, admin):
    client = client_for(admin)
    page = _create(client, org).content.decode()
    key = re.search(r'id="new-api-key">(bhp_[^<]+)<', page).group(1)
    api = Client(headers={"Authorization": f"Bearer {key}"})
    assert api.get("/api/v1/organization").status_code == 200
    stored = ApiKey.objects.get()
    client.post(reverse("api_key_revoke", args=[org.slug, stored.public_id]), {"confirmed": "yes"})
    assert api.get("/api/v1/organization").status_code == 401


@pytest.mark.parametrize("role_fixture", ["member", "viewer"])
def test_only_admins_manage_keys(request, org, role_fixture):
    membership = request.getfixturevalue(role_fixture)
    response = client_for(membership).post(
        reverse("api_key_create", args=[org.slug]), {"name": "x", "scopes": ["agents:read"]}
    )
    assert response.status_code == 403
    assert not ApiKey.objects.exists()


def test_create_api_key_command_prints_a_working_key(org):
    out = StringIO()
    call_command(
        "create_api_key", "--org", org.slug, "--name", "ops", "--scopes", "agents:read", stdout=out
    )
    key = out.getvalue().strip()
    assert key.startswith("bhp_") and len(key) >= 47
    assert ApiKey.objects.get().scopes == ["agents:read"]
    api = Client(headers={"Authorization": f"Bearer {key}"})
    assert api.get("/api/v1/agents").status_code == 200
    assert api.get("/api/v1/sessions").status_code == 403
    with pytest.raises(CommandError):
        call_command("create_api_key", "--org", "nope", "--name", "x", stdout=StringIO())


def test_docs_and_schema_are_served_offline():
    docs = Client().get("/api/v1/docs")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    schema = Client().get("/api/v1/openapi.json").json()
    assert (
        "/api/v1/agents" in schema["paths"]
        and "/api/v1/sessions/{session_id}/speak" in schema["paths"]
    )
