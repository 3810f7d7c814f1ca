"""Verified sign-up: a new account proves it reads its email address before it may create an
organization or invite anyone.

Sign-up answers the same whether the address is free or taken (it never says which addresses
have accounts): a free address gets a new, unconfirmed account and a confirmation link; a taken
one gets an email telling its owner to log in or reset their password. Confirmation links are
signed (no table), expire, and only confirm the address they were sent to.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from portal import throttle
from portal.errors import ApplicationError, Forbidden
from portal.models import Organization, User, email_normalize
from portal.text import one_line_require

SALT = "portal.email-verification"


def _limits() -> list[throttle.Limit]:
    window = settings.EMAIL_VERIFICATION_LIMIT_WINDOW
    return [throttle.Limit("verify:address", settings.EMAIL_VERIFICATION_LIMIT, window)]


def require_verified(user: User, action: str) -> None:
    if not user.email_verified_at:
        raise Forbidden(
            f"Confirm your email address before you {action}: open the link we sent to "
            f"{user.email}, or send a new one from the New organization page."
        )


def _send_throttled(email: str, *, subject: str, template: str, context: dict[str, object]) -> None:
    """Send at most EMAIL_VERIFICATION_LIMIT emails to one address per window; raises the
    limit's ApplicationError (the same for every address)."""
    throttle.require(
        [(limit, email, "Too many emails were sent to this address.") for limit in _limits()]
    )
    send_mail(
        subject=subject,
        message=render_to_string(template, context),
        from_email=None,
        recipient_list=[email],
    )


def link_make(*, user: User, base_url: str, organization_name: str = "") -> str:
    token = signing.dumps(
        {"u": user.pk, "e": user.email, "o": organization_name}, salt=SALT, compress=True
    )
    return base_url.rstrip("/") + reverse("signup_verify", kwargs={"token": token})


def _verification_send(*, user: User, base_url: str, organization_name: str = "") -> None:
    _send_throttled(
        user.email,
        subject="Confirm your email address for bitHuman Portal",
        template="portal/emails/verify_email.txt",
        context={
            "link": link_make(user=user, base_url=base_url, organization_name=organization_name),
            "hours": settings.EMAIL_VERIFICATION_MAX_AGE // 3600,
        },
    )


def _existing_account_send(*, email: str, base_url: str) -> None:
    root = base_url.rstrip("/")
    _send_throttled(
        email,
        subject="Sign-up attempt on bitHuman Portal",
        template="portal/emails/signup_existing.txt",
        context={
            "email": email,
            "login_url": root + reverse("login"),
            "reset_url": root + reverse("password_reset"),
        },
    )


@transaction.atomic
def signup(
    *, email: str, password: str, full_name: str, organization_name: str, base_url: str
) -> None:
    """Start a sign-up. Returns nothing that tells a free address from a taken one; raises only
    for bad input or the email limit, which both apply to any address alike."""
    from organizations import services  # services imports nothing of this module

    email = email_normalize(email)
    one_line_require(full_name, field="full_name")
    organization_name = one_line_require(organization_name, field="organization_name").strip()
    if not organization_name:
        raise ApplicationError("Give the organization a name.", field="organization_name")
    if User.objects.filter(email__iexact=email).exists():
        _existing_account_send(email=email, base_url=base_url)
        return
    try:
        user = services.user_create(
            email=email, password=password, full_name=full_name, email_verified=False
        )
    except ApplicationError:  # a concurrent sign-up took the address: same answer
        _existing_account_send(email=email, base_url=base_url)
        return
    _verification_send(user=user, base_url=base_url, organization_name=organization_name)


def resend(*, email: str, base_url: str) -> None:
    """A new confirmation link for an unconfirmed account; silently nothing for any other
    address (the same answer, and the same limit, for all)."""
    email = email_normalize(email)
    user = User.objects.filter(email__iexact=email, email_verified_at__isnull=True).first()
    if user is None:
        throttle.require(
            [(limit, email, "Too many emails were sent to this address.") for limit in _limits()]
        )
        return
    _verification_send(user=user, base_url=base_url)


def resend_to_user(*, user: User, base_url: str) -> None:
    if user.email_verified_at:
        return
    _verification_send(user=user, base_url=base_url)


@dataclass(frozen=True)
class Verified:
    user: User
    organization: Organization | None


INVALID = "This confirmation link is not valid or has expired. Ask for a new one."


def peek(*, token: str) -> User | None:
    """The account a link confirms, or None for a bad or expired link (nothing is written)."""
    try:
        data = signing.loads(token, salt=SALT, max_age=settings.EMAIL_VERIFICATION_MAX_AGE)
    except signing.BadSignature:
        return None
    user = User.objects.filter(pk=data.get("u"), is_active=True).first()
    if user is None or email_normalize(user.email) != email_normalize(str(data.get("e", ""))):
        return None
    return user


@transaction.atomic
def verify(*, token: str) -> Verified:
    """Confirm the address; on the first use, create the organization named at sign-up."""
    from organizations import services

    user = peek(token=token)
    if user is None:
        raise ApplicationError(INVALID)
    data = signing.loads(token, salt=SALT, max_age=settings.EMAIL_VERIFICATION_MAX_AGE)
    confirmed = User.objects.filter(pk=user.pk, email_verified_at__isnull=True).update(
        email_verified_at=timezone.now()
    )
    user.refresh_from_db()
    organization = None
    name = str(data.get("o") or "")
    if confirmed and name and not user.memberships.exists():
        organization = services.organization_create(name=name, owner=user)
    return Verified(user=user, organization=organization)


def mark_verified(*, user: User) -> None:
    """A password reset through the emailed link also proves the address."""
    if user.pk and not user.email_verified_at:
        User.objects.filter(pk=user.pk, email_verified_at__isnull=True).update(
            email_verified_at=timezone.now()
        )
        user.email_verified_at = timezone.now()
