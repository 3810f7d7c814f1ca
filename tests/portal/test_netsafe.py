"""portal.netsafe: the address rules, the pinned fetch and the public-URL check, on their own.

Pre-flight (tests/agents/test_preflight.py), webhook deliveries (tests/activity/test_webhooks.py)
and the LiveKit URL (tests/sessions) check that they use them; the property tests
(tests/security/test_properties.py) try many more addresses.
"""

from __future__ import annotations

import ipaddress
import socket

import httpx
import pytest

from portal import netsafe
from portal.errors import ApplicationError
from tests.activity.conftest import Receiver
from tests.agents.test_preflight import (
    NON_PUBLIC_ADDRESSES,
    PUBLIC_ADDRESSES,
    PUBLIC_V4,
    FakeWeb,
    rejection,
)

# IETF protocol assignments: Python counts 192.0.0.9 and 192.0.0.10 as global.
PROTOCOL_ASSIGNMENTS = [
    "192.0.0.1",
    "192.0.0.9",
    "192.0.0.10",
    "192.0.0.170",
    "::ffff:192.0.0.9",
    "64:ff9b::c000:9",  # NAT64 of 192.0.0.9
]
REFUSED = [*NON_PUBLIC_ADDRESSES, *PROTOCOL_ASSIGNMENTS, "fec0::1"]  # fec0::/10: site-local


@pytest.fixture
def web() -> FakeWeb:
    return FakeWeb()


# --- Address rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address):
    assert not netsafe.address_is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_are_allowed(address):
    assert netsafe.address_is_public(ipaddress.ip_address(address))


def test_the_protocol_assignment_range_is_refused_although_python_calls_part_of_it_global():
    assert ipaddress.ip_address("192.0.0.9").is_global  # why the range is listed by hand
    assert not netsafe.address_is_public(ipaddress.ip_address("192.0.0.9"))
    assert netsafe.address_is_public(ipaddress.ip_address("192.0.1.9"))  # just outside


@pytest.mark.parametrize(
    ("host", "internal"),
    [
        ("localhost", True),
        ("metadata.goog", True),
        ("db.internal", True),
        ("printer.local", True),
        ("router.home.arpa", True),
        ("app.localhost", True),
        ("example.com", False),
        ("internal.example.com", False),
    ],
)
def test_internal_host_names(host, internal):
    assert netsafe.host_is_internal(host) is internal


# --- The pinned fetch ---------------------------------------------------------------------------


def test_the_fetch_connects_to_the_checked_address_and_keeps_the_name(web):
    web.serve("https://example.com/face.png", body=b"face")

    assert web.fetcher().fetch(url="https://example.com/face.png", max_bytes=100) == b"face"

    [request] = web.requests
    assert request.url.host == PUBLIC_V4  # no second lookup by the HTTP stack (rebinding)
    assert request.headers["host"] == "example.com"
    assert request.extensions["sni_hostname"] == "example.com"  # the certificate's name
    assert request.headers["user-agent"] == netsafe.FETCH_USER_AGENT


@pytest.mark.parametrize("address", PROTOCOL_ASSIGNMENTS)
def test_a_name_resolving_into_the_protocol_assignments_is_refused(web, address):
    web.addresses["turn.example"] = [address]

    error = rejection(web.fetcher(), "https://turn.example/face.png")

    assert error.reason.startswith("points to a private or internal network address")
    assert web.requests == []


def test_every_redirect_is_checked_again(web):
    web.addresses["rebound.example"] = ["10.1.2.3"]
    web.redirect("https://example.com/a", "https://cdn.example.net/b")
    web.redirect("https://cdn.example.net/b", "https://rebound.example/c")

    error = rejection(web.fetcher(), "https://example.com/a")

    assert error.reason == (
        "redirected, and the new link points to a private or internal network address "
        "(10.1.2.3), which we never download from"
    )
    assert web.lookups == ["example.com", "cdn.example.net", "rebound.example"]
    assert len(web.requests) == 2  # the private address was never contacted


def test_a_redirect_to_an_internal_name_is_refused_before_any_lookup(web):
    web.redirect("https://example.com/a", "https://metadata.google.internal/computeMetadata/")

    error = rejection(web.fetcher(), "https://example.com/a")

    assert error.reason.startswith("redirected, and the new link points to an internal host")
    assert web.lookups == ["example.com"]


def test_the_fetch_ignores_proxies_from_the_environment(web, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://10.0.0.1:3128")
    web.serve("https://example.com/face.png", body=b"face")

    assert web.fetcher().fetch(url="https://example.com/face.png", max_bytes=100) == b"face"


# --- URLs connected to later --------------------------------------------------------------------


@pytest.fixture
def resolves(monkeypatch):
    answers: dict[str, list[str]] = {"hooks.example.com": [PUBLIC_V4]}

    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    monkeypatch.setattr(netsafe, "host_resolve", resolve)
    return answers


def test_a_public_https_url_gives_its_address(resolves):
    address = netsafe.public_url_check("https://hooks.example.com/x", local_allowed=False)

    assert address == ipaddress.ip_address(PUBLIC_V4)


@pytest.mark.parametrize("address", REFUSED)
def test_a_url_resolving_to_a_refused_address_is_refused(resolves, address):
    resolves["hooks.example.com"] = [PUBLIC_V4, address]  # one private answer is enough

    with pytest.raises(ApplicationError) as refused:
        netsafe.public_url_check("https://hooks.example.com/x", local_allowed=False)

    assert "private or internal network address" in refused.value.message
    assert refused.value.field == "url"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://hooks.example.com/x", "must start with https://"),
        ("https:///x", "no host name"),
        ("https://metadata/x", "internal host name"),
        ("https://192.0.0.9/x", "private or internal"),
        ("https://[::ffff:127.0.0.1]/x", "private or internal"),
        ("https://unknown.example/x", "could not be found"),
    ],
)
def test_urls_refused_with_a_reason(resolves, url, words):
    with pytest.raises(ApplicationError) as refused:
        netsafe.public_url_check(url, local_allowed=False)

    assert words in refused.value.message


def test_a_refusal_names_its_purpose():
    with pytest.raises(ApplicationError) as refused:
        netsafe.public_url_check(
            "wss://10.0.0.1",
            schemes=("wss",),
            purpose="LiveKit must be public",
            local_allowed=False,
        )

    assert refused.value.message.endswith("(10.0.0.1); LiveKit must be public.")


def test_local_urls_pass_by_name_where_allowed(settings):
    assert netsafe.public_url_check("http://127.0.0.1:8000/x", local_allowed=True) is None
    settings.WEBHOOK_ALLOW_LOCAL = True
    assert netsafe.public_url_check("http://localhost/x") is None
    settings.WEBHOOK_ALLOW_LOCAL = False
    with pytest.raises(ApplicationError):
        netsafe.public_url_check("http://localhost/x")


def test_pinned_post_connects_to_the_given_address_with_the_name_in_host():
    receiver = Receiver()
    try:
        port = httpx.URL(receiver.url).port
        response = netsafe.pinned_post(
            f"http://receiver.invalid:{port}/hooks",  # never resolvable: only the pin connects
            address=ipaddress.ip_address("127.0.0.1"),
            content=b"{}",
            headers={"Content-Type": "application/json"},
            timeout=5.0,
        )
    finally:
        receiver.close()

    assert response.status_code == 200
    [request] = receiver.requests
    assert request["headers"]["Host"] == f"receiver.invalid:{port}"
    assert request["body"] == b"{}"


def test_pinned_post_does_not_follow_redirects():
    receiver = Receiver()
    receiver.script = [(302, "http://127.0.0.1:9/elsewhere")]
    try:
        response = netsafe.pinned_post(
            receiver.url, address=None, content=b"", headers={}, timeout=5.0
        )
    finally:
        receiver.close()

    assert response.status_code == 302
    assert len(receiver.requests) == 1
