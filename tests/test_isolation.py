"""Tenant isolation: walk EVERY URL pattern of the project and attack each org-scoped one.

The walker reads the URL resolver, not a hand-kept list, so routes added later are covered by
default. Each route is classified:

- org-scoped (under /o/<org_slug>/): a member of another organization requests it with real
  object ids of the first organization, for GET and POST, both under the victim's slug and under
  the intruder's own slug; every answer must be 404 and no row anywhere may change. The victim's
  own owner must *not* get 404, which proves the walker builds real URLs.
- one of the explicitly listed non-tenant routes (auth pages, admin, sandbox, static).

A route that fits neither fails the test: classify it here when you add it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from portal.models import Organization
from portal.tenancy import Role
from tests.conftest import client_for
from tests.factories import (
    AgentFactory,
    AgentSessionFactory,
    ApiKeyFactory,
    InvitationFactory,
    MembershipFactory,
    PromptRevisionFactory,
    QuickReplyFactory,
)

ORG_PREFIX = "o/<slug:org_slug>/"

# Routes outside any organization, by URL name (or route prefix), and why they are safe.
NON_TENANT_NAMES = {
    "home": "redirects to the user's own organization",
    "signup": "creates a new organization",
    "login": "authentication",
    "logout": "authentication",
    "account": "the user's own profile",
    "password_change": "the user's own password",
    "password_change_done": "static confirmation",
    "password_reset": "by email",
    "password_reset_done": "static confirmation",
    "password_reset_confirm": "signed token",
    "password_reset_complete": "static confirmation",
    "organization_create": "creates a new organization",
    "invitation_accept": "secret token, bound to the invited email",
    "bithuman_webhook": "unguessable per-organization token plus an HMAC signature",
    "healthz": "liveness probe: no data, no dependency",
    "readyz": "readiness probe: which dependencies answer, no tenant data",
}
API_PREFIX = "api/v1/"
# API routes that need no key (documentation) or only answer errors.
API_PUBLIC = {"api/v1/", "api/v1/openapi.json", "api/v1/docs", "api/v1/<path:rest>"}
NON_TENANT_PREFIXES = {
    "admin/": "staff only (Django admin checks is_staff)",
    "sandbox/": "the bitHuman simulator, authenticated by its own api-secret",
    "static/": "static files",
    "media/": "uploaded media (served by the dev server only)",
}


@dataclass(frozen=True)
class Route:
    route: str
    name: str | None


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[Route]:
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield Route(route=prefix + str(p.pattern), name=p.name)


def all_routes() -> list[Route]:
    return list(_walk(get_resolver().url_patterns))


def classify(route: Route) -> str:
    if route.route.startswith(ORG_PREFIX):
        return "org"
    if route.route in API_PUBLIC:
        return "non-tenant"
    if route.route.startswith(API_PREFIX):
        return "api"
    if any(route.route.lstrip("^").startswith(p) for p in NON_TENANT_PREFIXES):
        return "non-tenant"
    if route.name in NON_TENANT_NAMES:
        return "non-tenant"
    return "unclassified"


# How to get a real object id of the victim organization for each URL parameter name.
# Add an entry when a route introduces a new parameter.
PARAMETERS: dict[str, Callable[[Organization], Any]] = {
    "member_id": lambda org: MembershipFactory(organization=org, role=Role.MEMBER).public_id,
    "invitation_id": lambda org: InvitationFactory(organization=org).public_id,
    "agent_id": lambda org: AgentFactory(organization=org).public_id,
    "key_id": lambda org: ApiKeyFactory(organization=org).public_id,
    "revision_id": lambda org: PromptRevisionFactory(agent__organization=org).pk,
    "session_id": lambda org: AgentSessionFactory(agent__organization=org).public_id,
    "reply_id": lambda org: QuickReplyFactory(organization=org).public_id,
    "endpoint_id": lambda org: _webhook_endpoint(org).public_id,
    "delivery_id": lambda org: _outbound_delivery(org).public_id,
}


def _webhook_endpoint(org: Organization) -> Any:
    from activity.models import WebhookEndpoint

    return WebhookEndpoint.objects.create(
        organization=org, url="https://hooks.example.com/x", events=["agent.ready"], secret="s"
    )


def _outbound_delivery(org: Organization) -> Any:
    from activity.models import OutboundDelivery

    endpoint = _webhook_endpoint(org)
    return OutboundDelivery.objects.create(
        organization=org, endpoint=endpoint, event_id="evt_1", event_type="agent.ready", body="{}"
    )


_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


def build_path(route: str, org_slug: str, victim: Organization) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group("name")
        if name == "org_slug":
            return org_slug
        if name not in PARAMETERS:
            pytest.fail(
                f"URL parameter <{name}> in {route!r} has no victim value: add it to "
                "PARAMETERS in tests/test_isolation.py"
            )
        return str(PARAMETERS[name](victim))

    return "/" + _PARAM.sub(value, route)


# Bookkeeping that a mere request may write (not data anyone else can see or change).
FINGERPRINT_IGNORED_FIELDS = {("portal.ApiKey", "last_used_at")}


def database_fingerprint() -> str:
    """A digest of every row of every model (bar sessions and login-attempt logs)."""
    skipped = {"sessions", "axes", "admin"}
    digest = hashlib.sha256()
    for model in sorted(apps.get_models(), key=lambda m: m._meta.label):
        if model._meta.app_label in skipped:
            continue
        fields = [
            f.attname
            for f in model._meta.concrete_fields
            if (model._meta.label, f.name) not in FINGERPRINT_IGNORED_FIELDS
        ]
        for row in model._default_manager.order_by("pk").values_list(*fields):
            digest.update(repr(row).encode())
    return digest.hexdigest()


def test_every_route_is_classified():
    unclassified = [r.route for r in all_routes() if classify(r) == "unclassified"]
    assert not unclassified, (
        "These routes are neither org-scoped nor listed as non-tenant in "
        f"tests/test_isolation.py: {unclassified}"
    )


def test_walker_finds_the_org_routes_and_each_goes_through_org_view():
    org_routes = [r for r in all_routes() if classify(r) == "org"]
    names = {r.name for r in org_routes}
    assert {"org_home", "members", "member_role", "invitation_revoke", "agent_list"} <= names
    for route in org_routes:
        path = "/" + _PARAM.sub(_placeholder, route.route)
        view = resolve(path).func
        assert hasattr(view, "org_permissions"), f"{route.route} does not use tenancy.org_view"


def _placeholder(match: re.Match[str]) -> str:
    return {"uuid": "00000000-0000-0000-0000-000000000000", "int": "1"}.get(
        match.group("converter"), "x"
    )


_FORM_BODY = "role=viewer&name=x&email=intruder%40example.com&confirm=acme"
_FORM_TYPE = "application/x-www-form-urlencoded"


def _methods(route: Route) -> set[str]:
    view = resolve("/" + _PARAM.sub(_placeholder, route.route)).func
    return set(getattr(view, "org_permissions", {}))


@pytest.mark.django_db
def test_foreign_organization_routes_answer_404_and_change_nothing(org, owner, other_owner):
    intruder = client_for(other_owner)
    victim_owner = client_for(owner)
    intruder_slug = other_owner.organization.slug
    checked = 0
    for route in all_routes():
        if classify(route) != "org":
            continue
        victim_path = build_path(route.route, org.slug, org)
        # The victim's own owner reaches it (POST-only routes answer 405 to GET, not 404).
        assert victim_owner.get(victim_path).status_code != 404, victim_path

        # Under the victim's slug: every method answers 404.
        attempts = [(victim_path, ("GET", "POST"))]
        if _PARAM.search(route.route.removeprefix(ORG_PREFIX)):
            # The route names objects: the victim's object ids under the intruder's own slug
            # must be 404 too, for the methods the route accepts (others are 405 either way).
            own_path = build_path(route.route, intruder_slug, org)
            attempts.append((own_path, tuple(m for m in ("GET", "POST") if m in _methods(route))))
        for path, methods in attempts:
            before = database_fingerprint()
            for method in methods:
                response = intruder.generic(method, path, _FORM_BODY, _FORM_TYPE)
                assert response.status_code == 404, f"{method} {path}: {response.status_code}"
            assert database_fingerprint() == before, f"{path} changed data"
            checked += 1
    assert checked >= 10


@pytest.mark.django_db
def test_foreign_and_missing_organizations_look_identical(org, other_owner):
    intruder = client_for(other_owner)
    foreign = intruder.get(f"/o/{org.slug}/members/")
    missing = intruder.get("/o/no-such-org/members/")
    assert foreign.status_code == missing.status_code == 404
    # Only the per-response CSRF token and CSP nonce may differ.
    per_response = re.compile(rb'[A-Za-z0-9]{64}|nonce="[^"]*"')
    assert per_response.sub(b"", foreign.content) == per_response.sub(b"", missing.content)


# --- The REST API: the organization comes from the key ------------------------------------------


def _api_operations(route: str) -> dict[str, Any]:
    """The operations the API serves on a route, read from its own OpenAPI schema."""
    from portal.api import api

    openapi_path = "/" + re.sub(r"<(?:[^>:]+:)?([^>]+)>", r"{\1}", route)
    return api.get_openapi_schema()["paths"].get(openapi_path, {})


def _api_methods(route: str) -> list[str]:
    return [method.upper() for method in _api_operations(route)]


def _valid_body(route: str, method: str) -> str:
    """A body that passes validation, so only the object lookup can refuse the request."""
    from portal.api import api

    schema = api.get_openapi_schema()
    content = _api_operations(route)[method.lower()].get("requestBody", {}).get("content", {})
    body_schema = content.get("application/json", {}).get("schema", {})
    if "$ref" in body_schema:
        body_schema = schema["components"]["schemas"][body_schema["$ref"].split("/")[-1]]
    samples = {"string": "walker", "integer": 1, "number": 1, "boolean": True}
    body = {}
    for name in body_schema.get("required", []):
        prop = body_schema["properties"][name]
        body[name] = prop["enum"][0] if "enum" in prop else samples.get(prop.get("type"), "x")
    return json.dumps(body)


def _api_client(org):
    from portal import services

    key = services.api_key_create(
        org=org,
        name="walker",
        scopes=["agents:read", "agents:write", "sessions:read", "sessions:write"],
        created_by=None,
    ).key
    from django.test import Client

    return Client(headers={"Authorization": f"Bearer {key}"})


@pytest.mark.django_db
def test_api_routes_answer_404_for_other_organizations_objects(org, other_org):
    intruder = _api_client(other_org)
    victim = _api_client(org)
    checked = 0
    for route in all_routes():
        if classify(route) != "api":
            continue
        methods = _api_methods(route.route)
        assert methods, f"{route.route} is routed but absent from the OpenAPI schema"
        if not _PARAM.search(route.route):
            continue  # no object in the URL: the key's organization is the only scope
        path = build_path(route.route, "", org)
        if "GET" in methods:
            assert victim.get(path).status_code != 404, path
        for method in methods:
            before = database_fingerprint()
            body = _valid_body(route.route, method)
            response = intruder.generic(method, path, body, "application/json")
            assert response.status_code == 404, f"{method} {path}: {response.status_code}"
            assert response.json()["error"]["code"] == "not_found"
            assert database_fingerprint() == before, f"{method} {path} changed data"
            checked += 1
    assert checked >= 5


@pytest.mark.django_db
def test_api_lists_show_only_the_keys_organization(org, other_org):
    intruder = _api_client(other_org)
    secrets_of_victim = [str(PARAMETERS[name](org)) for name in PARAMETERS]
    for route in all_routes():
        if classify(route) != "api" or _PARAM.search(route.route):
            continue
        if "GET" not in _api_methods(route.route):
            continue
        body = intruder.get("/" + route.route).content.decode()
        leaked = [value for value in secrets_of_victim if value in body]
        assert not leaked, f"/{route.route} shows another organization's objects: {leaked}"
