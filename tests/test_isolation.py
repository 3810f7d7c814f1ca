"""Tenant isolation: walk EVERY URL pattern and API operation and attack each one with another
organization's ids in the URL.

The walker reads the URL resolver and the API's own OpenAPI schema, not a hand-kept list, so
routes added later are covered by default. Each route is classified (tests/isolation_support.py):

- org-scoped (under /o/<org_slug>/): another organization's owner requests it
  - under the victim's slug with the victim's real ids, by GET, HEAD, POST, PUT, PATCH and
    DELETE, as a page and as an htmx fragment (`HX-Request`): 404, the same answer (status and
    page) as for a missing organization with fresh ids;
  - when the route names objects, under the attacker's own slug with the victim's ids: the same
    answer as with fresh random ids (404 for the methods the route accepts, 405 for the others).
  No row anywhere may change. The victim's own owner must *not* get 404, which proves the walker
  builds real URLs.
- API (/api/v1/): with the attacker's key, the victim's ids in the path answer exactly what
  fresh random ids answer (the 404 `not_found` envelope); operations without ids answer only the
  key's own organization (no trace of the victim in the body) and change none of its rows.
- the staff admin: tests/test_isolation_admin.py. Ids in bodies and query strings (forms,
  filters, JSON bodies, the webhook receiver): tests/test_isolation_ids.py.
- one of the explicitly listed non-tenant routes (auth pages, sandbox, static).

A route that fits none fails the test: classify it when you add it. Each walking test ends by
checking that it requested every (route, method) of its kind (read back from the resolver for
each request it made) and lists the ones it never exercised.
"""

from __future__ import annotations

import re
import uuid

import pytest

from tests.conftest import client_for
from tests.isolation_support import (
    JSON,
    ORG_PREFIX,
    PARAMETERS,
    Walk,
    all_routes,
    answer,
    api_client,
    api_methods,
    api_valid_body,
    build_path,
    classify,
    db_changes,
    db_snapshot,
    has_object_parameters,
    lazy_rows_create,
    leaks,
    missing_path,
    one_moment,
    org_methods,
    placeholder_path,
    routes_of,
    victim_world,
)

# tests/security/test_csrf_and_bruteforce.py walks the org routes with these.
__all__ = ["ORG_PREFIX", "_methods", "all_routes", "build_path", "classify"]

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_FORM_BODY = "role=viewer&name=x&email=intruder%40example.com&confirm=acme"
FRAGMENT = {"HX-Request": "true"}


def _methods(route) -> set[str]:
    """The methods an org route declares (kept for tests/security/test_csrf_and_bruteforce.py)."""
    return org_methods(route.route)


def test_every_route_is_classified():
    unclassified = [r.route for r in all_routes() if classify(r) == "unclassified"]
    assert not unclassified, (
        "These routes are neither org-scoped, API, admin nor listed as non-tenant in "
        f"tests/isolation_support.py: {unclassified}"
    )


def test_walker_finds_the_org_routes_and_each_goes_through_org_view():
    from django.urls import resolve

    org_routes = [r for r in all_routes() if classify(r) == "org"]
    names = {r.name for r in org_routes}
    assert {"org_home", "members", "member_role", "invitation_revoke", "agent_list"} <= names
    exports = {"session_export_csv", "session_export_json", "audit_export"}
    assert exports <= names, "the exports must be org routes, walked like the rest"
    for route in org_routes:
        view = resolve(placeholder_path(route.route)).func
        assert hasattr(view, "org_permissions"), f"{route.route} does not use tenancy.org_view"


def _attack(walk, intruder, method, victim_path, fresh_path, *, expect=None, **extra):
    """Request the victim's path and the fresh one; both answers must be identical."""
    label = f"{method} {victim_path}" + (" (fragment)" if extra else "")
    with one_moment():
        victim_answer = walk.request(intruder, method, victim_path, _FORM_BODY, **extra)
        fresh_answer = walk.request(intruder, method, fresh_path, _FORM_BODY, **extra)
    status = victim_answer.status_code
    if expect is not None:
        walk.check(status == expect, f"{label}: {status}, expected {expect}")
    walk.check(
        answer(victim_answer) == answer(fresh_answer),
        f"{label}: answers {status} but a missing one answers {fresh_answer.status_code} "
        "(or the same status with another body)",
    )


@pytest.mark.django_db
def test_foreign_organization_routes_answer_404_and_change_nothing(org, owner, other_owner):
    intruder = client_for(other_owner)
    victim_owner = client_for(owner)
    intruder_slug = other_owner.organization.slug
    walk = Walk()
    routes = routes_of("org")
    for route in routes:
        victim_path = build_path(route, org.slug, org)
        # The victim's own owner reaches it (POST-only routes answer 405 to GET, not 404).
        assert victim_owner.get(victim_path).status_code != 404, victim_path
        missing_org = missing_path(route, f"no-such-org-{uuid.uuid4().hex[:8]}")
        names_objects = has_object_parameters(route)
        if names_objects:
            own_path = build_path(route, intruder_slug, org)
            fresh = missing_path(route, intruder_slug)

        before = db_snapshot()
        # Under the victim's slug: whatever the method, the same 404 as a missing organization.
        for method in METHODS:
            _attack(walk, intruder, method, victim_path, missing_org, expect=404)
        for method in ("GET", "POST"):
            _attack(walk, intruder, method, victim_path, missing_org, headers=FRAGMENT)
        if names_objects:
            # The victim's objects under the intruder's own slug: the same answer as objects
            # that do not exist (404 for the route's methods; others are 405 either way).
            for method in METHODS:
                expect = 404 if method in org_methods(route) else None
                _attack(walk, intruder, method, own_path, fresh, expect=expect)
            for method in ("GET", "POST"):
                _attack(walk, intruder, method, own_path, fresh, headers=FRAGMENT)
        changed = db_changes(before, db_snapshot())
        walk.check(not changed, f"/{route} changed data: {changed}")

    walk.assert_clean()
    expected = {(r, m) for r in routes for m in org_methods(r) | {"GET", "POST"}}
    assert not walk.missing(expected), f"never exercised: {walk.missing(expected)}"
    assert len(routes) >= 30


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


@pytest.mark.django_db
def test_api_routes_answer_404_for_other_organizations_objects(org, owner, other_org):
    world = victim_world(org, owner)
    lazy_rows_create(other_org)
    intruder = api_client(other_org)
    victim = api_client(org)
    walk = Walk()
    routes = routes_of("api")
    for route in routes:
        methods = api_methods(route)
        assert methods, f"{route} is routed but absent from the OpenAPI schema"
        for method in methods:
            body = api_valid_body(route, method)
            if not has_object_parameters(route):
                # No object in the URL: the key's organization is the only scope.
                before = db_snapshot()
                response = walk.request(intruder, method, "/" + route, body, JSON)
                found = leaks(response, world.markers())
                walk.check(not found, f"{method} /{route} shows the victim's data: {found}")
                changed = db_changes(before, db_snapshot(), new_rows_of=other_org)
                walk.check(not changed, f"{method} /{route} changed data: {changed}")
                continue
            path = build_path(route, "", org)
            if method == "GET":
                assert victim.get(path).status_code != 404, path
            before = db_snapshot()
            response = walk.request(intruder, method, path, body, JSON)
            fresh = walk.request(intruder, method, missing_path(route, ""), body, JSON)
            label = f"{method} {path}"
            walk.check(response.status_code == 404, f"{label}: {response.status_code}")
            walk.check(answer(response) == answer(fresh), f"{label}: differs from a missing id")
            if response.status_code == 404:
                code = response.json()["error"]["code"]
                walk.check(code == "not_found", f"{label}: error code {code}")
            changed = db_changes(before, db_snapshot())
            walk.check(not changed, f"{label} changed data: {changed}")
    walk.assert_clean()
    expected = {(r, m) for r in routes for m in api_methods(r)}
    assert not walk.missing(expected), f"never exercised: {walk.missing(expected)}"
    assert len(expected) >= 15


@pytest.mark.django_db
def test_api_lists_show_only_the_keys_organization(org, other_org):
    intruder = api_client(other_org)
    ids = set(PARAMETERS) - {"kind"}  # "face" names no object
    secrets_of_victim = [str(PARAMETERS[name](org)) for name in ids]
    for route in routes_of("api"):
        if has_object_parameters(route) or "GET" not in api_methods(route):
            continue
        body = intruder.get("/" + route).content.decode()
        # A whole value: a small integer id must not match a digit of a date or a count.
        leaked = [
            value
            for value in secrets_of_victim
            if re.search(rf"(?<![\w-]){re.escape(value)}(?![\w-])", body)
        ]
        assert not leaked, f"/{route} shows another organization's objects: {leaked}"
