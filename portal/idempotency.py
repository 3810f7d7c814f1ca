"""Idempotent API POSTs, Stripe's rules: the same key and body within 24 h replays the first
answer; the same key with another body is `409 idempotency_key_reused`; a duplicate while the
first is still running is `409 request_in_progress`. Keys are per API key, and an operation
looks them up only after authentication and its scope check, so a key can replay only answers
it was given itself."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.models import ApiIdempotencyKey, ApiKey

TTL = timedelta(hours=24)


class IdempotencyConflict(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Outcome:
    status: int
    body: Any
    replayed: bool


def request_fingerprint(*, method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def idempotent_run(
    *,
    api_key: ApiKey,
    key: str,
    fingerprint: str,
    run: Callable[[], tuple[int, Any]],
    keep: Callable[[BaseException], tuple[int, Any] | None],
) -> Outcome:
    """Run `run` once per (API key, key); call it after the scope check. `keep` turns an error
    raised by `run` into an answer worth replaying (a 4xx), or None to forget the key (a 5xx:
    the client may retry).

    A replay is one read: the key is looked up first, and only a new key is inserted (the
    unique constraint still settles two first requests racing each other)."""
    now = timezone.now()
    existing = ApiIdempotencyKey.objects.filter(api_key=api_key, key=key).first()
    if existing is not None and existing.created_at < now - TTL:
        ApiIdempotencyKey.objects.filter(pk=existing.pk, created_at__lt=now - TTL).delete()
        existing = None
    if existing is not None:
        return _replay(existing, fingerprint)
    try:
        with transaction.atomic():
            record = ApiIdempotencyKey.objects.create(
                organization_id=api_key.organization_id,
                api_key=api_key,
                key=key,
                request_hash=fingerprint,
            )
    except IntegrityError:
        return _replay(ApiIdempotencyKey.objects.get(api_key=api_key, key=key), fingerprint)
    try:
        status, body = run()
    except BaseException as error:
        kept = keep(error)
        if kept is None:
            record.delete()
            raise
        ApiIdempotencyKey.objects.filter(pk=record.pk).update(
            status_code=kept[0], response_body=kept[1]
        )
        raise
    ApiIdempotencyKey.objects.filter(pk=record.pk).update(status_code=status, response_body=body)
    return Outcome(status=status, body=body, replayed=False)


def _replay(existing: ApiIdempotencyKey, fingerprint: str) -> Outcome:
    """The first answer again, or why it cannot be replayed."""
    if existing.request_hash != fingerprint:
        raise IdempotencyConflict(
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request.",
        )
    if existing.status_code is None:
        raise IdempotencyConflict(
            "request_in_progress",
            "A request with this Idempotency-Key is still being processed; retry shortly.",
        )
    return Outcome(status=existing.status_code, body=existing.response_body, replayed=True)
