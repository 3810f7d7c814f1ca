"""The embed token's `fingerprint` (api/embedding.md): "a stable per-visitor hex string ... one
value per end user, reused across their visits". bitHuman keys per-visitor rate limits and the
agent's conversation memory by it, so a portal operator is one end user across their sessions.

It is derived from who starts the session, never from their email: an HMAC (Django's
`salted_hmac`, keyed by SECRET_KEY) of the user's id, or of the API key's id when a key starts
it. Nobody without the secret key can compute or guess it, and it says nothing about the person.
"""

from __future__ import annotations

from django.utils.crypto import salted_hmac

from portal.tenancy import Actor

_SALT = "sessions.fingerprints.end-user"
LENGTH = 32  # hex characters (128 bits)


def end_user_fingerprint(actor: Actor) -> str:
    """The operator's own fingerprint: the same for all their sessions, in every organization."""
    # A key has no person behind it: the key is the end user.
    subject = f"user:{actor.user_id}" if actor.user_id else f"api-key:{actor.api_key.pk}"  # type: ignore[union-attr]
    return salted_hmac(_SALT, subject, algorithm="sha256").hexdigest()[:LENGTH]
