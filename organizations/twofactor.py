"""Two-factor sign-in: a TOTP authenticator app and single-use recovery codes (django-otp's TOTP
and static devices). Optional per person; an organization may require it of its members
(`Organization.require_two_factor`, enforced by `tenancy.org_view`)."""

from __future__ import annotations

import django_otp
import segno
from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal.errors import ApplicationError
from portal.models import Membership, Organization, User
from portal.tenancy import Role, role_require, two_factor_enabled

APP_NAME = "Authenticator app"
RECOVERY_NAME = "Recovery codes"
RECOVERY_CODES = 10


def enabled(user: User) -> bool:
    return two_factor_enabled(user)


def setup_device(user: User) -> TOTPDevice:
    """The authenticator being set up: one unconfirmed TOTP device, made on first need."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    return device or TOTPDevice.objects.create(user=user, name=APP_NAME, confirmed=False)


def qr_data_uri(device: TOTPDevice) -> str:
    """The otpauth:// URL as a QR code: an SVG data URI (rendered here, no third party)."""
    return str(segno.make(device.config_url, error="m").svg_data_uri(scale=5, border=2))


def secret_text(device: TOTPDevice) -> str:
    """The secret in base32, in groups of four, for typing into an app by hand."""
    from base64 import b32encode

    text = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def _recovery_codes_new(user: User) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def _code_clean(code: str) -> str:
    return "".join(code.split())


@transaction.atomic
def setup_confirm(*, user: User, code: str) -> list[str]:
    """Check a code from the app being set up; turn two-factor on. Returns the recovery codes
    (shown once)."""
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).first()
    if device is None:
        raise ApplicationError("Start the setup again.", field="code")
    if not device.verify_token(_code_clean(code)):
        raise ApplicationError(
            "That code is not right. Check the time on your phone and try the newest code.",
            field="code",
        )
    TOTPDevice.objects.filter(user=user, confirmed=True).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return _recovery_codes_new(user)


def match(*, user: User, code: str) -> django_otp.models.Device | None:
    """The device a code from the app or a recovery code belongs to (a recovery code is used
    up), or None. django-otp slows repeated failures down per device."""
    return django_otp.match_token(user, _code_clean(code))


def match_confirmed_app(*, user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def organizations_requiring(user: User) -> list[Organization]:
    return list(Organization.objects.filter(membership__user=user, require_two_factor=True))


@transaction.atomic
def disable(*, user: User, code: str) -> None:
    requiring = organizations_requiring(user)
    if requiring:
        raise ApplicationError(
            f"{requiring[0].name} requires two-factor sign-in of its members: it stays on.",
            field="code",
        )
    if match(user=user, code=code) is None:
        raise ApplicationError("That code is not right.", field="code")
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()


def reset(*, user: User) -> None:
    """Staff, for someone who lost both their phone and their recovery codes."""
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()


@transaction.atomic
def recovery_codes_renew(*, user: User, code: str) -> list[str]:
    if not enabled(user):
        raise ApplicationError("Turn two-factor sign-in on first.", field="code")
    if match(user=user, code=code) is None:
        raise ApplicationError("That code is not right.", field="code")
    return _recovery_codes_new(user)


def recovery_codes_left(user: User) -> int:
    return StaticToken.objects.filter(device__user=user).count()


def organization_require(*, actor: Membership, required: bool, actor_verified: bool) -> None:
    """Owners turn the requirement on or off. Turning it on needs the owner's own session to
    have shown a second factor, so nobody locks themselves out by mistake."""
    from activity import services as activity_services

    role_require(actor, Role.OWNER, "change the two-factor requirement")
    org = actor.organization
    if required and not actor_verified:
        raise ApplicationError(
            "Turn on two-factor sign-in for your own account first (and sign in with it).",
            field="require_two_factor",
        )
    if org.require_two_factor == required:
        return
    org.require_two_factor = required
    org.save(update_fields=["require_two_factor"])
    activity_services.audit_record(
        org=org,
        actor=actor,
        action="organization.two_factor",
        target=org,
        details={"required": required},
    )
