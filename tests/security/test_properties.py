"""Property-based tests (Hypothesis): invariants that must hold for any input, not just ours.

- The REST API never answers 500 and every refusal is the error envelope, whatever JSON body or
  query string it is sent (create agent, speak, add context, list filters), and its
  Idempotency-Key handling replays or refuses any key consistently.
- bitHuman webhook signatures: any bytes and headers are either verified or refused with the
  documented `WebhookSignatureError` (nothing else escapes), a delivery we sign verifies, and
  the receiver answers any forgery 400, never 500.
- Pre-flight: the sniffers and checks never raise on any bytes, and no address in a private,
  loopback, link-local, CGNAT, multicast, reserved or site-local range (nor an IPv6 spelling of
  one) is ever judged public, nor fetched.
- Stored secrets round-trip through encryption for any text, also across a key rotation.
- Organization slugs are unique and URL-safe for any name.
- An agent's status never moves backwards for any sequence of upstream answers.

Examples are kept few (deadline off) so the file runs in well under a minute.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import string
import uuid
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from django.urls import resolve, reverse
from django.utils import timezone
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from agents import preflight, statuses
from agents.models import TERMINAL_STATUSES, Agent, AgentStatus
from organizations import connections
from organizations import services as portal_services
from portal import crypto, netsafe
from portal.bithuman import errors as bh_errors
from portal.bithuman import types as bh
from portal.bithuman import webhooks
from portal.bithuman.types import Account, ContextDelivery, RuntimeSessionPage
from portal.models import Organization, User
from tests.api.conftest import ApiClient, make_key
from tests.factories import AgentFactory, AgentSessionFactory

pytestmark = pytest.mark.django_db

# The Django test database is one transaction per test: examples share it, which is fine for
# these properties (each looks only at what its own example did).
DJANGO = hypothesis_settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PURE = hypothesis_settings(max_examples=200, deadline=None)

# --- Strategies ---------------------------------------------------------------------------------

# Text of any code point a JSON body can carry (no lone surrogates: they are not UTF-8).
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=12,
)
# What a client may send as a header value over HTTP (latin-1, no control characters).
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


MAGIC = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"RIFF\x24\x00\x00\x00WAVE",
    b"ID3",
    b"\xff\xfb",
    b"OggS",
    b"\x00\x00\x00\x20ftypM4A ",
]
# Bytes that start like a supported format more often than chance would, to reach the parsers.
media_bytes = st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGIC), st.binary())

agent_field = {
    "name": json_values | st.sampled_from(["Ava", " ", "x" * 101]),
    "prompt": json_values | st.just("A calm museum guide"),
    "model": json_values | st.sampled_from(["expression-1", "essence-2", "video-9"]),
    "aspect_ratio": json_values | st.sampled_from(["16:9", "1:1", "4:3"]),
    "framing": json_values | st.sampled_from(["portrait", "full_body"]),
    "transparency": json_values,
    "image_url": json_values | st.sampled_from(["https://127.0.0.1/x.png", "javascript:x"]),
    "audio_url": json_values | st.just("http://[::1]/a.wav"),
    "image_base64": json_values | media_bytes.map(_b64),
    "audio_base64": json_values | media_bytes.map(_b64),
}
agent_bodies = json_values | st.fixed_dictionaries({}, optional=agent_field)


# --- The API: no 500, every refusal in the envelope ---------------------------------------------

SNAKE = re.compile(r"[a-z][a-z_]*\Z")


def assert_api_answer(response: Any, allowed: set[int]) -> dict[str, Any]:
    """The status is an expected one (never 500), the body JSON, and a refusal the envelope."""
    assert response.status_code in allowed, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    if response.status_code >= 400:
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) == {"code", "message", "details"}, error
        assert SNAKE.match(error["code"]) and error["code"] != "internal_error", error
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["details"], dict)
    return body


def _unreachable(self: netsafe.UrlFetcher, *, url: str, max_bytes: int) -> bytes:
    raise netsafe.UrlRejected("could not be reached")


@pytest.fixture
def api(org, settings, monkeypatch):
    settings.API_RATE_LIMIT_PER_MINUTE = 10**9
    # Links are never fetched here (no network): every one is refused as unreachable.
    monkeypatch.setattr(netsafe.UrlFetcher, "fetch", _unreachable)
    return ApiClient(make_key(org))


def _post_json(api: ApiClient, path: str, body: Any, headers: dict[str, str] | None = None):
    return api.client.post(
        f"/api/v1{path}",
        data=json.dumps(body).encode(),
        content_type="application/json",
        headers={**api.headers, **(headers or {})},
    )


@DJANGO
@given(body=agent_bodies)
@example(body={"name": "Ava", "prompt": "x", "image_base64": _b64(b"\x89PNG\r\n\x1a\n" * 3)})
@example(body=[[[]]] * 3)
def test_creating_an_agent_never_fails_with_a_server_error(api, body):
    response = _post_json(api, "/agents", body)
    answer = assert_api_answer(response, {202, 400, 409, 422})
    if response.status_code == 202:
        agent = Agent.objects.get(public_id=answer["id"])
        assert agent.name == answer["name"] and answer["status"] == "submitting"


@DJANGO
@given(raw=st.binary(max_size=200))
def test_any_bytes_as_a_body_are_refused_in_the_envelope(api, raw):
    response = api.client.post(
        "/api/v1/agents", data=raw, content_type="application/json", headers=api.headers
    )
    assert_api_answer(response, {202, 400, 422})


list_keys = st.sampled_from(
    [
        *["limit", "offset", "status", "search", "agent_id", "actor", "actor_kind", "action"],
        *["target", "since", "until", "page", "q"],
    ]
)
# Query values, NUL and other control characters included (they arrive URL-encoded).
query_values = st.text(st.characters(exclude_categories=["Cs"]), max_size=30) | st.sampled_from(
    ["-1", "0", "101", "1e3", "9" * 30, "2026-02-30", "0001-01-01", "9999-12-31", "\x00"]
)


@DJANGO
@given(
    path=st.sampled_from(["/agents", "/sessions", "/audit-events"]),
    query=st.dictionaries(list_keys, query_values, max_size=5),
)
@example(path="/audit-events", query={"actor_kind": "\x00"})
@example(path="/agents", query={"search": "\x00", "status": "\x00"})
def test_list_filters_never_fail_with_a_server_error(api, path, query):
    response = api.client.get(f"/api/v1{path}", query, headers=api.headers)
    body = assert_api_answer(response, {200, 404, 422})
    if response.status_code == 200:
        assert isinstance(body["items"], list) and isinstance(body["count"], int)


class FakeBithuman:
    """The organization's bitHuman client for speak and add-context: answers what it is told."""

    def __init__(self) -> None:
        self.error: bh_errors.BithumanError | None = None

    def __enter__(self) -> FakeBithuman:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _deliver(self, **body: object) -> ContextDelivery:
        if self.error is not None:
            raise self.error
        return ContextDelivery(delivered_to_rooms=1)

    agent_speak = agent_context_add = _deliver

    def account_get(self) -> Account:
        return Account(user_id="user-1")

    def runtime_session_list(self, **query: object) -> RuntimeSessionPage:
        return RuntimeSessionPage(sessions=())


UPSTREAM = [
    None,
    bh_errors.NoActiveRoomsError(code="NOT_FOUND", message="No active rooms"),
    bh_errors.RateLimitedError(code="RATE_LIMITED", message="Slow down", retry_after=2.5),
    bh_errors.UpstreamError(code="INTERNAL_ERROR", message="<b>oops</b>", http_status=500),
]


@DJANGO
@given(
    kind=st.sampled_from(["speak", "context"]),
    body=json_values
    | st.fixed_dictionaries(
        {}, optional={"message": json_values | any_text, "context": json_values | any_text}
    ),
    upstream=st.sampled_from(UPSTREAM),
)
@example(kind="speak", body={"message": "Hello"}, upstream=None)
@example(kind="context", body={"context": " \n "}, upstream=None)
def test_speak_and_context_never_fail_with_a_server_error(
    api, org, monkeypatch, kind, body, upstream
):
    fake = FakeBithuman()
    fake.error = upstream
    monkeypatch.setattr(connections, "client_for", lambda **kwargs: fake)
    session = AgentSessionFactory(agent__organization=org)
    response = _post_json(api, f"/sessions/{session.public_id}/{kind}", body)
    answer = assert_api_answer(response, {201, 400, 409, 422, 429, 502})
    if response.status_code == 201:
        field = "message" if kind == "speak" else "context"
        assert answer["text"] == body[field].strip() and answer["outcome"] == "delivered"


@DJANGO
@given(key=header_text, name=st.text(string.ascii_letters, min_size=1, max_size=20))
@example(key="k" * 256, name="Long")
@example(key="   ", name="Blank")
def test_idempotency_keys_replay_or_refuse_consistently(api, key, name):
    headers = {"Idempotency-Key": key}
    before = Agent.objects.count()
    first = _post_json(api, "/agents", {"name": name, "prompt": "p"}, headers)
    first_body = assert_api_answer(first, {202, 409, 422})
    if first.get("Idempotency-Replayed"):  # this key and body were drawn before
        assert Agent.objects.count() == before
        return
    if not key.strip():
        assert first.status_code == 202  # no key: an ordinary create
        return
    if len(key.strip()) > 255:
        assert first.status_code == 422 and Agent.objects.count() == before
        return
    if first.status_code == 409:  # this key was drawn before, with another name
        assert first_body["error"]["code"] == "idempotency_key_reused"
        return
    again = _post_json(api, "/agents", {"name": name, "prompt": "p"}, headers)
    assert again.status_code == first.status_code
    assert json.loads(again.content) == first_body
    assert again["Idempotency-Replayed"] == "true"
    reused = _post_json(api, "/agents", {"name": name + "x", "prompt": "p"}, headers)
    body = assert_api_answer(reused, {409})
    assert body["error"]["code"] == "idempotency_key_reused"
    assert Agent.objects.count() == before + 1  # one create, whatever was replayed


# --- bitHuman webhook signatures ----------------------------------------------------------------

timestamps = (
    st.integers().map(str)
    | st.integers(min_value=-(10**400), max_value=10**400).map(str)
    | header_text
    | st.sampled_from(["", " 1", "1_000", "١٢٣", "+1", "-0", "0x10", "1e9"])
)


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "d-long-event", "event": "e" * 51, "data": {}},
        {"id": "d" * 101, "event": "agent.ready", "data": {}},
        {"id": "d-nul", "event": "agent.ready", "data": {"code": "A\u0000B"}},
        {"id": "d-nul-key", "event": "agent.ready", "data": {"k\u0000": 1}},
    ],
)
def test_a_signed_delivery_the_columns_cannot_hold_is_refused_not_a_server_error(org, payload):
    """Genuine signature, unstorable content: 400 and no row, never a failed write (500)."""
    from django.test import Client

    from portal.models import WebhookDelivery

    connection = connections.connection_get(org=org)
    connection.webhook_secret = "whsec_property"
    connection.save()
    raw = json.dumps(payload).encode()
    headers = webhooks.delivery_headers_build(
        secret="whsec_property", raw_body=raw, event="agent.ready", delivery_id="", timestamp=None
    )
    headers.pop(webhooks.DELIVERY_HEADER, None)  # the id comes from the body
    response = Client(raise_request_exception=False).post(
        f"/webhooks/bithuman/{connection.receiver_token}/",
        raw,
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 400, response.content[:300]
    assert not WebhookDelivery.objects.filter(organization=org).exists()


@PURE
@given(
    secret=st.text(max_size=40),
    body=st.binary(max_size=200),
    timestamp=st.none() | timestamps,
    signature=st.none() | header_text | st.just("sha256=" + "0" * 64),
    now=st.floats(min_value=0, max_value=4e9),
)
@example(secret="s", body=b"{}", timestamp="9" * 400, signature="sha256=00", now=1e9)
@example(secret="s", body=b"{}", timestamp="-" + "9" * 400, signature="sha256=00", now=1e9)
def test_signature_verification_refuses_anything_it_cannot_prove(
    secret, body, timestamp, signature, now
):
    headers = {}
    if timestamp is not None:
        headers[webhooks.TIMESTAMP_HEADER] = timestamp
    if signature is not None:
        headers[webhooks.SIGNATURE_HEADER] = signature
    try:
        webhooks.signature_verify(secret=secret, raw_body=body, headers=headers, now=now)
    except webhooks.WebhookSignatureError:
        return
    # Accepted: then it really is our signature of this body, sent within the tolerance.
    assert timestamp is not None and signature is not None
    expected = webhooks.signature_compute(secret=secret, timestamp=timestamp, raw_body=body)
    assert signature.strip() == expected
    assert abs(now - int(timestamp)) <= webhooks.SIGNATURE_TOLERANCE_SECONDS


@DJANGO
@given(
    body=st.binary(max_size=200),
    timestamp=st.none() | timestamps,
    signature=st.none() | header_text,
    delivery=st.none() | header_text,
    known_token=st.booleans(),
)
@example(body=b"{}", timestamp="9" * 400, signature="sha256=0", delivery=None, known_token=True)
def test_the_webhook_receiver_refuses_forgeries_without_a_server_error(
    org, body, timestamp, signature, delivery, known_token
):
    from django.test import Client

    connection = connections.connection_get(org=org)
    if not connection.webhook_secret:
        connection.webhook_secret = "whsec_property"
        connection.save()
    token = connection.receiver_token if known_token else "no-such-receiver"
    headers = {
        name: value
        for name, value in [
            (webhooks.TIMESTAMP_HEADER, timestamp),
            (webhooks.SIGNATURE_HEADER, signature),
            (webhooks.DELIVERY_HEADER, delivery),
        ]
        if value is not None
    }
    response = Client(raise_request_exception=False).post(
        f"/webhooks/bithuman/{token}/", body, content_type="application/json", headers=headers
    )
    assert response.status_code == 400, response.content[:300]
    assert json.loads(response.content)["ok"] is False


@PURE
@given(
    secret=st.text(max_size=40),
    body=st.binary(max_size=200),
    sent=st.integers(min_value=0, max_value=2**33),
    delay=st.integers(min_value=-300, max_value=300),
    tamper=st.binary(min_size=1, max_size=5),
)
def test_a_signed_delivery_verifies_and_any_change_breaks_it(secret, body, sent, delay, tamper):
    headers = webhooks.delivery_headers_build(
        secret=secret, raw_body=body, event="agent.ready", delivery_id="d1", timestamp=sent
    )
    # Header names arrive in any case; the check does not care.
    lowered = {name.lower(): value for name, value in headers.items()}
    webhooks.signature_verify(secret=secret, raw_body=body, headers=lowered, now=sent + delay)
    with pytest.raises(webhooks.WebhookSignatureError):
        webhooks.signature_verify(
            secret=secret, raw_body=body + tamper, headers=headers, now=sent + delay
        )
    with pytest.raises(webhooks.WebhookSignatureError):
        webhooks.signature_verify(secret=secret, raw_body=body, headers=headers, now=sent + 301)


# --- Pre-flight: sniffers, media checks, addresses ----------------------------------------------


@PURE
@given(head=st.binary(max_size=32) | media_bytes.map(lambda b: b[:16]))
def test_sniffers_never_raise_and_name_only_supported_formats(head):
    assert preflight.image_sniff(head) in {None, "JPEG", "PNG", "WEBP"}
    assert preflight.audio_sniff(head) in {None, "WAV", "MP3", "M4A", "OGG"}
    if not head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF")):
        assert preflight.image_sniff(head) is None


@hypothesis_settings(max_examples=150, deadline=None)
@given(content=media_bytes, kind=st.sampled_from(["image", "audio"]))
def test_media_checks_judge_any_bytes_with_a_specific_reason(content, kind):
    """Any upload gets a verdict about its type, size and content, never an exception nor the
    catch-all "we could not check this" (which would mean a parser raised something unplanned)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile(f"upload.{kind}", content)
    media = preflight.IMAGE if kind == "image" else preflight.AUDIO
    checks = preflight.media_checks(
        kind=media, source=preflight.MediaSource(upload=upload), fetcher=netsafe.UrlFetcher()
    )
    assert checks and all(check.outcome in {"pass", "warning", "fail"} for check in checks)
    assert not any(check.key.endswith("_source") for check in checks), checks
    if media.sniff(content[:16]) is None:
        assert [c.key for c in checks if c.outcome == "fail"][:1] == [f"{kind}_type"]
    assert upload.tell() == 0  # rewound for whoever saves it


def _v4_in(network: str) -> st.SearchStrategy[ipaddress.IPv4Address]:
    net = ipaddress.ip_network(network)
    return st.integers(0, net.num_addresses - 1).map(lambda i: net[i])


PRIVATE_V4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
]
private_v4 = st.one_of(*(_v4_in(n) for n in PRIVATE_V4))


def _v6_in(network: str) -> st.SearchStrategy[ipaddress.IPv6Address]:
    net = ipaddress.ip_network(network)
    return st.integers(0, net.num_addresses - 1).map(lambda i: net[i])


private_v6 = st.one_of(
    st.just(ipaddress.IPv6Address("::1")),
    st.just(ipaddress.IPv6Address("::")),
    _v6_in("fc00::/7"),  # unique local (AWS metadata: fd00:ec2::254)
    _v6_in("fe80::/10"),  # link-local
    _v6_in("fec0::/10"),  # site-local (deprecated, still routed inside some networks)
    _v6_in("ff00::/8"),  # multicast
    # IPv6 spellings of private IPv4 addresses: mapped, NAT64 (well-known prefix), compatible.
    private_v4.map(lambda a: ipaddress.IPv6Address(f"::ffff:{a}")),
    private_v4.map(
        lambda a: ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) + int(a))
    ),
    private_v4.map(lambda a: ipaddress.IPv6Address(int(a))),
)


class _NoNetwork(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"a refused address was fetched: {request.url}")


@PURE
@given(address=private_v4 | private_v6, literal=st.booleans())
@example(address=ipaddress.IPv6Address("fec0::1"), literal=False)
@example(address=ipaddress.IPv4Address("192.0.0.9"), literal=False)  # Python: "global"
def test_no_private_address_is_ever_public_nor_fetched(address, literal):
    assert not netsafe.address_is_public(address)
    fetcher = netsafe.UrlFetcher(resolver=lambda host, port: [str(address)], transport=_NoNetwork())
    host = (f"[{address}]" if address.version == 6 else str(address)) if literal else "cdn.example"
    with pytest.raises(netsafe.UrlRejected) as refused:
        fetcher.fetch(url=f"https://{host}/face.png", max_bytes=1000)
    assert "private or internal" in refused.value.reason


@PURE
@given(url=st.text(max_size=80) | st.builds("https://{}/{}".format, any_text, any_text))
def test_any_link_is_fetched_or_refused_with_a_reason(url):
    """Whatever the customer types, the fetcher answers bytes or UrlRejected, never a crash;
    with every name resolving to loopback, nothing is fetched."""
    fetcher = netsafe.UrlFetcher(resolver=lambda host, port: ["127.0.0.1"], transport=_NoNetwork())
    with pytest.raises(netsafe.UrlRejected) as refused:
        fetcher.fetch(url=url, max_bytes=1000)
    assert refused.value.reason


# --- Encryption of stored secrets ---------------------------------------------------------------


@pytest.fixture
def two_keys(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    return old, new


@hypothesis_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(secret=st.text(st.characters(exclude_categories=["Cs"]), max_size=200))
def test_secrets_round_trip_through_encryption_and_rotation(settings, two_keys, secret):
    old, new = two_keys
    settings.FIELD_ENCRYPTION_KEYS = [old]
    field = crypto.EncryptedTextField()
    stored = field.get_prep_value(secret)
    if not secret:
        assert stored == "" and field.from_db_value(stored, None, None) == ""
        return
    assert stored != secret and (len(secret) < 4 or secret not in stored)
    assert field.from_db_value(stored, None, None) == secret
    assert field.get_prep_value(secret) != stored  # a fresh IV each time
    settings.FIELD_ENCRYPTION_KEYS = [new, old]  # rotation: newest first, old still readable
    assert crypto.decrypt(stored) == secret and not crypto.is_under_newest_key(stored)
    rotated = crypto.rotate(stored)
    assert crypto.is_under_newest_key(rotated) and crypto.decrypt(rotated) == secret
    settings.FIELD_ENCRYPTION_KEYS = [new]  # the old key dropped after encryption_rotate
    assert crypto.decrypt(rotated) == secret


# --- Organization slugs -------------------------------------------------------------------------

# Names the forms let through (they refuse blank names and line breaks or other control
# characters: portal.text).
org_names = st.text(st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"]), max_size=100)


@DJANGO
@given(names=st.lists(org_names.filter(str.strip), min_size=1, max_size=4))
@example(names=["Acme", "ACME", "acme!", "  acme  "])
@example(names=["日本語", "🦄", "---", "x" * 100])
def test_organization_slugs_are_unique_and_url_safe(names):
    owner = User.objects.create(  # no hashing
        email=f"owner-{uuid.uuid4().hex}@example.com", email_verified_at=timezone.now()
    )
    for name in names:
        org = portal_services.organization_create(name=name, owner=owner)
        assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", org.slug), org.slug
        assert len(org.slug) <= Organization._meta.get_field("slug").max_length
        assert org.name == name.strip()
        url = reverse("org_home", args=[org.slug])
        assert resolve(url).kwargs == {"org_slug": org.slug}
    slugs = list(Organization.objects.values_list("slug", flat=True))
    assert len(slugs) == len(set(slugs))


# --- Status never moves backwards ---------------------------------------------------------------

upstream_status = st.builds(
    bh.AgentStatus,
    status=st.sampled_from([*bh.AGENT_STATUSES, "submitting", "queued", ""]),
    progress=st.none() | st.floats(min_value=0, max_value=1),  # the documented range
    current_step=st.none() | st.sampled_from(["payment", "persona", "voice_image", "lip_sync"]),
    # No NUL: see test_odd_upstream_answers_keep_the_agent_sane.
    progress_msg=st.none() | any_text.filter(lambda t: "\x00" not in t),
    error_message=st.none() | any_text.filter(lambda t: "\x00" not in t),
)


@DJANGO
@given(
    start=st.sampled_from(["submitting", "processing", "generating", "completed"]),
    answers=st.lists(
        st.tuples(upstream_status, st.sampled_from(["poll", "webhook"])), min_size=1, max_size=8
    ),
)
def test_an_agents_status_never_moves_backwards(org, start, answers):
    # A code of its own per example: Hypothesis runs every example in one test transaction, and
    # one bitHuman agent belongs to one organization (agent_code_one_org).
    agent = AgentFactory(
        organization=org, status=start, progress=0.0, code=f"A01P{uuid.uuid4().hex[:6].upper()}"
    )
    for answer, source in answers:
        before = Agent.objects.get(pk=agent.pk)
        # The poller's statement, as production runs it (one agent of a batch).
        statuses.agent_statuses_apply(answers=[(agent, answer)], source=source)
        after = Agent.objects.get(pk=agent.pk)
        if before.status in TERMINAL_STATUSES:
            assert (after.status, after.progress) == (before.status, before.progress)
        assert after.status != AgentStatus.SUBMITTING or before.status == AgentStatus.SUBMITTING
        assert after.progress >= before.progress or after.status == AgentStatus.FAILED
        assert 0.0 <= after.progress <= 1.0
        if after.status == AgentStatus.READY:
            assert after.progress == 1.0 and after.ready_at is not None


@pytest.mark.parametrize(
    "answer",
    [
        {"progress": float("nan")},
        {"progress": 5.0},
        {"progress": 0.5, "progress_msg": "step\x00two"},
    ],
)
def test_odd_upstream_answers_keep_the_agent_sane(org, answer):
    agent = AgentFactory(organization=org, status="processing", progress=0.2, code="A01PROP002")
    statuses.agent_status_apply(
        agent=agent, status=bh.AgentStatus(status="generating", **answer), source="poll"
    )
    agent.refresh_from_db()
    assert 0.2 <= agent.progress <= 1.0
    assert "\x00" not in agent.progress_message
