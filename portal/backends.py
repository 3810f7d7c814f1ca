"""Authentication by email (case-insensitive) and the key django-axes locks on."""

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from portal.models import email_normalize


class EmailBackend(ModelBackend):
    """ModelBackend whose username is the email; the manager looks it up case-insensitively."""


def axes_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str:
    """Lock on the normalised email, so `A@x.com` and `a@x.com` count as one account."""
    raw = ""
    if credentials:
        raw = credentials.get("username") or credentials.get("email") or ""
    if not raw and request is not None:
        raw = request.POST.get("username", "")
    return email_normalize(str(raw))
