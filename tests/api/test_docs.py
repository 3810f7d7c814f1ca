"""The API docs for integrators: every field of every schema is described, the docs are one click
away in the main navigation, and Settings shows ready-to-run snippets beside the API keys."""

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def test_every_schema_field_has_a_description():
    schema = Client().get("/api/v1/openapi.json").json()
    components = schema["components"]["schemas"]
    assert len(components) >= 15
    bare = [
        f"{name}.{field}"
        for name, component in components.items()
        for field, spec in component.get("properties", {}).items()
        if not spec.get("description", "").strip()
    ]
    assert bare == []
    # Query parameters (lists, filters) inherit their descriptions from the same schemas.
    listing = schema["paths"]["/api/v1/agents"]["get"]["parameters"]
    assert {p["name"]: bool(p.get("description")) for p in listing} == {
        "status": True,
        "search": True,
        "limit": True,
        "offset": True,
    }


def test_api_docs_are_in_the_main_navigation_for_every_member(org, viewer):
    html = client_for(viewer).get(reverse("org_home", args=[org.slug])).content.decode()
    nav = html.split('aria-label="Main"', 1)[1].split("</nav>", 1)[0]
    assert f'href="{reverse("api:openapi-view")}">API docs</a>' in nav


def test_settings_show_curl_python_and_javascript_snippets_beside_the_keys(org, admin):
    html = client_for(admin).get(reverse("org_settings", args=[org.slug])).content.decode()
    keys = html.split('id="api-keys"', 1)[1].split("</section>", 1)[0]
    for heading in ("curl", "Python (httpx)", "JavaScript (fetch)"):
        assert f">{heading}</h3>" in keys
    assert 'curl -H "Authorization: Bearer bhp_your_key"' in keys
    assert "http://testserver/api/v1/agents" in keys
    # Sections with their own navigation, in the order.
    nav = html.split('aria-label="Settings sections"', 1)[1].split("</nav>", 1)[0]
    order = ["#organization", "#bithuman-connection", "#livekit", "#api-keys", "#webhooks"]
    assert [nav.index(anchor) for anchor in order] == sorted(nav.index(a) for a in order)
    ids = [html.index(f'id="{anchor[1:]}"') for anchor in order]
    assert ids == sorted(ids)
