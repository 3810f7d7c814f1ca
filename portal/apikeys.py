"""Who is calling the API: an organization API key, found by its clear prefix and compared by
hash in constant time. Issuing and revoking keys is organizations.services (it is audited)."""

from __future__ import annotations

import hmac
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from portal.models import API_KEY_LOOKUP_LENGTH, API_KEY_PREFIX, ApiKey, token_hash

API_KEY_LAST_USED_EVERY = timedelta(minutes=1)


def api_key_authenticate(*, key: str) -> ApiKey | None:
    """The usable key this string is, or None. Constant-time comparison of the hashes."""
    if not key.startswith(API_KEY_PREFIX) or len(key) < 40:
        return None
    presented = token_hash(key)
    for candidate in (
        ApiKey.objects.usable()
        .select_related("organization")
        .filter(prefix=key[:API_KEY_LOOKUP_LENGTH])
    ):
        if hmac.compare_digest(candidate.key_hash, presented):
            _api_key_touch(candidate)
            return candidate
    return None


def _api_key_touch(api_key: ApiKey) -> None:
    """Record use at most once a minute per key: authenticating costs no write per request."""
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < API_KEY_LAST_USED_EVERY:
        return
    ApiKey.objects.filter(pk=api_key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - API_KEY_LAST_USED_EVERY)
    ).update(last_used_at=now)
