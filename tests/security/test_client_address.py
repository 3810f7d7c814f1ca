"""The client's address behind the trusted reverse proxy (PORTAL_TRUSTED_PROXIES): one reading,
through python-ipware, for django-axes, the API's failed-key throttle and the audit log. A forged
`X-Forwarded-For` neither hides a client nor lets it pose as another one."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from activity.models import AuditEvent
from tests.api.conftest import make_key
from tests.conftest import client_for
from tests.factories import PASSWORD, UserFactory
from tests.portal.test_settings import PROD_ENV, _manage

PROXY = "10.0.0.2"

_PROBE = """
import json
from django.test import RequestFactory
from axes.helpers import get_client_ip_address
from portal.apisupport import _auth_failures_key
from portal.clientip import client_ip
cases = {
    "through the proxy": {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "203.0.113.5"},
    "forged, through the proxy": {
        "REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.5"},
    "forged, around the proxy": {"REMOTE_ADDR": "198.51.100.9", "HTTP_X_FORWARDED_FOR": "6.6.6.6"},
    "garbage, through the proxy": {
        "REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "<x>, 203.0.113.5"},
}
out = {}
for name, meta in cases.items():
    request = RequestFactory().get("/", **meta)
    out[name] = [client_ip(request), get_client_ip_address(request), _auth_failures_key(request)]
print(json.dumps(out))
"""


def test_production_settings_read_the_client_behind_the_proxy_and_ignore_forgeries():
    result = _manage(
        "shell", "-c", _PROBE, env={**PROD_ENV, "PORTAL_TRUSTED_PROXIES": "10.0.0.0/8"}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    for name, client in {
        "through the proxy": "203.0.113.5",
        "forged, through the proxy": "203.0.113.5",
        "forged, around the proxy": "198.51.100.9",
        "garbage, through the proxy": "203.0.113.5",
    }.items():
        assert seen[name] == [client, client, f"api:authfail:{client}"], name


def test_the_retired_proxy_count_setting_stops_the_portal_from_starting():
    result = _manage("check", env={**PROD_ENV, "AXES_PROXY_COUNT": "1"})
    assert result.returncode != 0
    assert "PORTAL_TRUSTED_PROXIES" in result.stderr


def _via_proxy(client_address: str, forged: str = "") -> dict[str, str]:
    chain = f"{forged}, {client_address}" if forged else client_address
    return {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": chain}


@pytest.fixture
def behind_proxy(settings):
    settings.PORTAL_TRUSTED_PROXIES = ["10.0.0.0/8"]


def _api(key: str, **meta: str) -> int:
    return (
        Client(**meta).get("/api/v1/agents", headers={"Authorization": f"Bearer {key}"}).status_code
    )


def test_junk_api_keys_through_the_proxy_lock_out_only_their_sender(org, settings, behind_proxy):
    settings.API_AUTH_FAILURE_LIMIT = 5
    real = make_key(org)
    junk = "bhp_" + "x" * 43
    attacker = "203.0.113.7"
    # Each request forges a different address in front; the proxy's own entry still names it.
    for n in range(5):
        assert _api(junk, **_via_proxy(attacker, forged=f"192.0.2.{n}")) == 401
    assert _api(real, **_via_proxy(attacker, forged="192.0.2.99")) == 429
    # Every other client behind the same proxy keeps working.
    assert _api(real, **_via_proxy("198.51.100.20")) == 200
    # Someone reaching the portal around the proxy cannot pose as another client.
    for _ in range(5):
        _api(junk, REMOTE_ADDR="198.51.100.66", HTTP_X_FORWARDED_FOR="198.51.100.77")
    assert _api(real, **_via_proxy("198.51.100.77")) == 200


def test_wrong_passwords_through_the_proxy_lock_only_the_guesser(db, behind_proxy):
    UserFactory(email="frank@example.com")
    attacker = Client()
    for n in range(5):
        attacker.post(
            reverse("login"),
            {"username": "frank@example.com", "password": "wrong"},
            **_via_proxy("203.0.113.7", forged=f"192.0.2.{n}"),
        )
    locked = attacker.post(
        reverse("login"),
        {"username": "frank@example.com", "password": PASSWORD},
        **_via_proxy("203.0.113.7", forged="198.51.100.20"),
    )
    assert locked.status_code == 429
    owner = Client().post(
        reverse("login"),
        {"username": "frank@example.com", "password": PASSWORD},
        **_via_proxy("198.51.100.20"),
    )
    assert owner.status_code == 302


def test_the_audit_log_records_the_client_not_the_proxy(org, owner, behind_proxy):
    client = client_for(owner)
    client.post(
        reverse("api_key_create", args=[org.slug]),
        {"name": "ci", "scopes": ["agents:read"]},
        **_via_proxy("203.0.113.5", forged="6.6.6.6"),
    )
    event = AuditEvent.objects.for_org(org).get(action="api_key.created")
    assert event.ip_address == "203.0.113.5"
