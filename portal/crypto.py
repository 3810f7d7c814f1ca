"""Encryption at rest for secrets (bitHuman API secrets, webhook signing secrets).

MultiFernet over FIELD_ENCRYPTION_KEYS, newest first: values are encrypted with the newest key
and decrypted with any of them, so a key can be rotated by putting a new one in front and running
`manage.py encryption_rotate`, which re-encrypts every value under the newest key.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import models
from django.dispatch import receiver


@cache
def _keys() -> tuple[Fernet, ...]:
    raw = list(settings.FIELD_ENCRYPTION_KEYS)
    if not raw:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty.")
    try:
        return tuple(Fernet(key) for key in raw)
    except (ValueError, TypeError) as error:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must hold Fernet keys (Fernet.generate_key())."
        ) from error


@receiver(setting_changed)
def keys_reset(*, setting: str = "FIELD_ENCRYPTION_KEYS", **kwargs: Any) -> None:
    """Forget the cached keys when the setting changes (tests override it)."""
    if setting == "FIELD_ENCRYPTION_KEYS":
        _keys.cache_clear()


def encrypt(plaintext: str) -> str:
    return MultiFernet(list(_keys())).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return MultiFernet(list(_keys())).decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS: was a key removed "
            "before `manage.py encryption_rotate` ran?"
        ) from None


def is_under_newest_key(token: str) -> bool:
    try:
        _keys()[0].decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def rotate(token: str) -> str:
    return MultiFernet(list(_keys())).rotate(token.encode()).decode()


def mask(secret: str) -> str:
    """What pages, admin and API show of a secret: its last 4 characters at most."""
    if not secret:
        return ""
    return "••••" + secret[-4:] if len(secret) > 8 else "••••"


class EncryptedTextField(models.TextField):
    """A text column holding a Fernet token; Python code sees the plaintext."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str:
        if not value:
            return ""
        return decrypt(value)

    def get_prep_value(self, value: Any) -> str:
        value = super().get_prep_value(value)
        if not value:
            return ""
        return encrypt(str(value))
