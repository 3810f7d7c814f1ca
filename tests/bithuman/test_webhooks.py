"""Webhook signatures: HMAC-SHA256 of "{timestamp}.{raw body}", five-minute window."""

import hashlib
import hmac
import json

import pytest

from portal.bithuman.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSignatureError,
    delivery_headers_build,
    signature_compute,
    signature_verify,
)

SECRET = "whsec_60fe3d1c2b4a"
SENT_AT = 1_785_000_000
BODY = json.dumps(
    {
        "id": "evt_1",
        "event": "agent.ready",
        "created": SENT_AT,
        "data": {"agent_id": "A91XMB7113", "code": "A91XMB7113"},
    }
).encode()


def signed_headers(*, secret: str = SECRET, body: bytes = BODY, sent_at: int = SENT_AT) -> dict:
    return delivery_headers_build(
        secret=secret, raw_body=body, event="agent.ready", delivery_id="evt_1", timestamp=sent_at
    )


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), f"{SENT_AT}.".encode() + BODY, hashlib.sha256).hexdigest()

    assert (
        signature_compute(secret=SECRET, timestamp=SENT_AT, raw_body=BODY) == f"sha256={expected}"
    )


def test_delivery_headers_are_the_four_documented_ones():
    headers = signed_headers()

    assert headers == {
        "X-BitHuman-Event": "agent.ready",
        "X-BitHuman-Delivery": "evt_1",
        "X-BitHuman-Timestamp": str(SENT_AT),
        "X-BitHuman-Signature": signature_compute(secret=SECRET, timestamp=SENT_AT, raw_body=BODY),
    }


def test_a_good_signature_is_accepted():
    signature_verify(secret=SECRET, raw_body=BODY, headers=signed_headers(), now=SENT_AT + 30)


def test_header_names_are_matched_case_insensitively():
    headers = {name.lower(): value for name, value in signed_headers().items()}

    signature_verify(secret=SECRET, raw_body=BODY, headers=headers, now=SENT_AT)


def test_a_signature_made_with_another_secret_is_rejected():
    headers = signed_headers(secret="whsec_someone_else")

    with pytest.raises(WebhookSignatureError, match="signature"):
        signature_verify(secret=SECRET, raw_body=BODY, headers=headers, now=SENT_AT)


def test_a_tampered_body_is_rejected():
    tampered = BODY.replace(b"agent.ready", b"agent.failed")

    with pytest.raises(WebhookSignatureError, match="signature"):
        signature_verify(secret=SECRET, raw_body=tampered, headers=signed_headers(), now=SENT_AT)


def test_a_replayed_timestamp_is_rejected_even_with_the_same_signature():
    headers = signed_headers()
    headers[TIMESTAMP_HEADER] = str(SENT_AT + 1)

    with pytest.raises(WebhookSignatureError, match="signature"):
        signature_verify(secret=SECRET, raw_body=BODY, headers=headers, now=SENT_AT)


@pytest.mark.parametrize("age", [301, 3600, -301])
def test_a_timestamp_outside_five_minutes_is_rejected(age):
    with pytest.raises(WebhookSignatureError, match="tolerance"):
        signature_verify(secret=SECRET, raw_body=BODY, headers=signed_headers(), now=SENT_AT + age)


def test_a_timestamp_just_inside_five_minutes_is_accepted():
    signature_verify(secret=SECRET, raw_body=BODY, headers=signed_headers(), now=SENT_AT + 300)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (SIGNATURE_HEADER, None),
        (TIMESTAMP_HEADER, None),
        (TIMESTAMP_HEADER, "yesterday"),
        (SIGNATURE_HEADER, "sha256="),
        (SIGNATURE_HEADER, "md5=abc"),
    ],
)
def test_missing_or_garbled_headers_are_rejected(header, value):
    headers = signed_headers()
    if value is None:
        del headers[header]
    else:
        headers[header] = value

    with pytest.raises(WebhookSignatureError):
        signature_verify(secret=SECRET, raw_body=BODY, headers=headers, now=SENT_AT)
