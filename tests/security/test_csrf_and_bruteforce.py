"""CSRF on every state-changing page route; API-key guessing throttled per client address."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.api.conftest import make_key
from tests.conftest import AUTH_BACKEND
from tests.test_isolation import ORG_PREFIX, _methods, all_routes, build_path, classify

pytestmark = pytest.mark.django_db

STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
# Non-tenant routes that change state through a browser session (the webhook receiver is
# csrf-exempt by design: it is authenticated by an HMAC signature; the API by its key).
SESSION_FORMS = (
    "signup",
    "login",
    "logout",
    "account",
    "password_change",
    "password_reset",
    "organization_create",
    "signup_sent",
    "login_otp",
    "two_factor",
    "verification_resend",
    "impersonation_stop",
)


def test_every_state_changing_org_route_refuses_a_post_without_csrf_token(org, owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner.user, backend=AUTH_BACKEND)
    checked = []
    for route in all_routes():
        if classify(route) != "org":
            continue
        methods = [m for m in STATE_CHANGING if m in _methods(route)]
        if not methods:
            continue
        path = build_path(route.route, org.slug, org)
        for method in methods:
            response = client.generic(method, path, "name=x", "application/x-www-form-urlencoded")
            assert response.status_code == 403, f"{method} {path}: {response.status_code}"
            assert b"CSRF" in response.content
        checked.append(route.route.removeprefix(ORG_PREFIX))
    assert len(checked) >= 15, checked
    # The same requests with the token go through (so the 403 above was CSRF, not roles).
    client.get(reverse("org_settings", args=[org.slug]))
    token = client.cookies["csrftoken"].value
    response = client.post(
        reverse("api_key_create", args=[org.slug]),
        {"name": "ci", "scopes": ["agents:read"]},
        headers={"X-CSRFToken": token},
    )
    assert response.status_code != 403


@pytest.mark.parametrize("name", SESSION_FORMS)
def test_session_forms_refuse_a_post_without_csrf_token(name, owner):
    client = Client(enforce_csrf_checks=True)
    if name not in ("signup", "login", "password_reset", "signup_sent", "login_otp"):
        client.force_login(owner.user, backend=AUTH_BACKEND)
    response = client.post(reverse(name), {"email": "x@example.com"})
    assert response.status_code == 403


def _api(key: str, address: str) -> int:
    response = Client(REMOTE_ADDR=address).get(
        "/api/v1/agents", headers={"Authorization": f"Bearer {key}"}
    )
    return response.status_code


def test_api_key_guessing_is_throttled_per_address_without_locking_the_owner_out(org, settings):
    settings.API_AUTH_FAILURE_LIMIT = 5
    real = make_key(org)
    guess = real[:-6] + "zzzzzz"
    attacker, owner_elsewhere = "203.0.113.7", "198.51.100.20"
    assert [_api(guess, attacker) for _ in range(5)] == [401] * 5
    throttled = Client(REMOTE_ADDR=attacker).get(
        "/api/v1/agents", headers={"Authorization": f"Bearer {guess}"}
    )
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "too_many_failed_authentications"
    assert int(throttled["Retry-After"]) > 0
    assert _api(real, attacker) == 429  # even a right guess learns nothing now
    assert _api(real, owner_elsewhere) == 200  # the key's owner is not locked out
    assert _api(real, "198.51.100.21") == 200
