"""Signing webhook deliveries the way bitHuman documents it (vendor/bithuman/docs/api/webhooks.md).

Written from the documentation, not from the portal's client: a simulator that shared the
client's signing code would agree with any mistake in it. The documented delivery:

    X-BitHuman-Event: agent.ready
    X-BitHuman-Delivery: evt_a1b2c3...
    X-BitHuman-Timestamp: 1780417371
    X-BitHuman-Signature: sha256=<hex HMAC-SHA256 over "{timestamp}.{raw_body}", keyed by whsec_...>
"""

from __future__ import annotations

import hashlib
import hmac
import time


def signature(*, secret: str, timestamp: int, raw_body: bytes) -> str:
    """The `X-BitHuman-Signature` value: `sha256=` and the hex digest of `"{ts}.{raw body}"`."""
    message = str(timestamp).encode("ascii") + b"." + raw_body
    return "sha256=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def delivery_headers(
    *, secret: str, raw_body: bytes, event: str, event_id: str, timestamp: int | None = None
) -> dict[str, str]:
    """The headers of one delivery of `raw_body` (the exact bytes sent), signed now."""
    sent_at = int(time.time()) if timestamp is None else timestamp
    return {
        "X-BitHuman-Event": event,
        "X-BitHuman-Delivery": event_id,
        "X-BitHuman-Timestamp": str(sent_at),
        "X-BitHuman-Signature": signature(secret=secret, timestamp=sent_at, raw_body=raw_body),
    }
