"""bitHuman webhook signatures: computing them (the sandbox) and verifying them (our receiver).

A delivery carries `X-BitHuman-Timestamp: <unix seconds>` and
`X-BitHuman-Signature: sha256=<hex>`, the HMAC-SHA256 of `"{timestamp}.{raw body}"` keyed with the
webhook's secret (`whsec_...`, used as is). Deliveries older than five minutes are rejected so a
captured request cannot be replayed later.

    webhooks.signature_verify(secret=secret, raw_body=request.body, headers=request.headers)
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Mapping
from typing import Final

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_TOLERANCE_SECONDS",
    "TIMESTAMP_HEADER",
    "WebhookSignatureError",
    "delivery_headers_build",
    "signature_compute",
    "signature_verify",
]

EVENT_HEADER: Final = "X-BitHuman-Event"
DELIVERY_HEADER: Final = "X-BitHuman-Delivery"
TIMESTAMP_HEADER: Final = "X-BitHuman-Timestamp"
SIGNATURE_HEADER: Final = "X-BitHuman-Signature"
SIGNATURE_TOLERANCE_SECONDS: Final = 5 * 60

_SIGNATURE_PREFIX: Final = "sha256="


class WebhookSignatureError(Exception):
    """The delivery is not provably from bitHuman (or is too old): answer 400 and drop it."""


def signature_compute(*, secret: str, timestamp: int | str, raw_body: bytes) -> str:
    """The `X-BitHuman-Signature` value for a body sent at `timestamp`: `"sha256=<hex>"`."""
    signed = f"{timestamp}.".encode() + raw_body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return _SIGNATURE_PREFIX + digest


def delivery_headers_build(
    *, secret: str, raw_body: bytes, event: str, delivery_id: str, timestamp: int | None = None
) -> dict[str, str]:
    """The four headers a delivery carries (for the sandbox sending deliveries)."""
    sent_at = int(time.time()) if timestamp is None else timestamp
    return {
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(sent_at),
        SIGNATURE_HEADER: signature_compute(secret=secret, timestamp=sent_at, raw_body=raw_body),
    }


def signature_verify(
    *,
    secret: str,
    raw_body: bytes,
    headers: Mapping[str, str],
    now: float | None = None,
    tolerance_seconds: int = SIGNATURE_TOLERANCE_SECONDS,
) -> None:
    """Return if the delivery is authentic and fresh; raise `WebhookSignatureError` otherwise.

    `raw_body` must be the bytes as received (re-serialised JSON would not match). `headers` may be
    Django's `request.headers` or any mapping; names are matched case-insensitively.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    timestamp_text = lowered.get(TIMESTAMP_HEADER.lower())
    signature = lowered.get(SIGNATURE_HEADER.lower())
    if not timestamp_text or not signature:
        raise WebhookSignatureError("missing signature or timestamp header")
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise WebhookSignatureError("timestamp is not unix seconds") from None
    current = time.time() if now is None else now
    # Both directions: a timestamp far in the future would otherwise stay replayable for longer.
    try:
        age = abs(current - timestamp)
    except OverflowError:  # a 400-digit "timestamp" is beyond any float
        age = math.inf
    if age > tolerance_seconds:
        raise WebhookSignatureError("timestamp outside the tolerance window")
    # Sign the header's own text, so "0123" and "123" are not treated as the same timestamp.
    expected = signature_compute(secret=secret, timestamp=timestamp_text, raw_body=raw_body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise WebhookSignatureError("signature does not match")
