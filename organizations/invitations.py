"""Invitations: issue, resend, revoke, accept (with or without sign-up), expire. Links are
bound to the invited email and stored as a SHA-256 of the token only."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from activity import services as activity_services
from organizations import verification
from organizations.services import user_create
from portal import throttle
from portal.errors import ApplicationError, Conflict, Forbidden
from portal.models import (
    Invitation,
    Membership,
    User,
    email_normalize,
    token_hash,
)
from portal.tenancy import Role, role_at_least, role_require, roles_grantable_by
from portal.text import one_line_quote

logger = logging.getLogger(__name__)


# --- Invitations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str  # shown once, in the email; only its hash is stored
    link: str


def invitation_link(*, base_url: str, token: str) -> str:
    return base_url.rstrip("/") + reverse("invitation_accept", kwargs={"token": token})


def _invitation_send(*, invitation: Invitation, token: str, base_url: str) -> IssuedInvitation:
    """The invitation email. Whatever people wrote (names) only ever follows a fixed label on
    the same line, flattened to one line and shortened: no user text can start a line of its
    own, so nobody can make the portal's email say something of theirs."""
    link = invitation_link(base_url=base_url, token=token)
    inviter = invitation.invited_by
    organization = one_line_quote(invitation.organization.name, limit=100)
    context = {
        "organization": organization,
        "inviter": (
            f"{one_line_quote(inviter.full_name, limit=80)} ({inviter.email})".lstrip()
            if inviter and inviter.full_name
            else (inviter.email if inviter else "an administrator")
        ),
        "role": invitation.get_role_display(),
        "link": link,
        "ttl_days": settings.INVITATION_TTL.days,
    }
    send_mail(
        subject=f"You are invited to {organization} on bitHuman Portal",
        message=render_to_string("portal/emails/invitation.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )
    return IssuedInvitation(invitation=invitation, token=token, link=link)


def _invitations_throttle(actor: Membership, *, field: str | None = None) -> None:
    """Invitations and resends share two budgets: the inviter's and the organization's."""
    window = settings.INVITATION_LIMIT_WINDOW
    throttle.require(
        [
            (
                throttle.Limit("invite:user", settings.INVITATION_LIMIT_PER_INVITER, window),
                str(actor.user_id),
                "You have sent too many invitations for now.",
            ),
            (
                throttle.Limit("invite:org", settings.INVITATION_LIMIT_PER_ORGANIZATION, window),
                str(actor.organization_id),
                "This organization has sent too many invitations for now.",
            ),
        ],
        field=field,
    )


def _token_new() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


@transaction.atomic
def invitation_create(
    *, actor: Membership, email: str, role: str, base_url: str
) -> IssuedInvitation:
    role_require(actor, Role.ADMIN, "invite people")
    if actor.user is not None:
        verification.require_verified(actor.user, "invite people")
    org = actor.organization
    email = email_normalize(email)
    if role not in Role.values:
        raise ApplicationError("Choose a valid role.", field="role")
    if role not in roles_grantable_by(actor.role):
        raise ApplicationError("You cannot grant a role above your own.", field="role")
    if Membership.objects.for_org(org).filter(user__email__iexact=email).exists():
        raise ApplicationError("This person is already a member.", field="email")
    if (
        Invitation.objects.for_org(org)
        .pending()
        .filter(email__iexact=email, expires_at__gt=timezone.now())
        .exists()
    ):
        raise ApplicationError(
            "This email already has a pending invitation: resend it instead.", field="email"
        )
    _invitations_throttle(actor, field="email")
    token, hashed = _token_new()
    invitation = Invitation.objects.create(
        organization=org,
        email=email,
        role=role,
        invited_by=actor.user,
        token_hash=hashed,
        expires_at=timezone.now() + settings.INVITATION_TTL,
    )
    activity_services.audit_record(
        org=org, actor=actor, action="member.invited", target=invitation, details={"role": role}
    )
    return _invitation_send(invitation=invitation, token=token, base_url=base_url)


@transaction.atomic
def invitation_resend(
    *, actor: Membership, invitation: Invitation, base_url: str
) -> IssuedInvitation:
    """A fresh link and a fresh 7 days; the old link stops working."""
    role_require(actor, Role.ADMIN, "resend invitations")
    if invitation.accepted_at or invitation.revoked_at:
        raise Conflict(f"This invitation was {invitation.state}; invite again instead.")
    if not role_at_least(actor.role, invitation.role):
        raise Forbidden("You cannot grant a role above your own.")
    _invitations_throttle(actor)
    token, hashed = _token_new()
    invitation.token_hash = hashed
    invitation.expires_at = timezone.now() + settings.INVITATION_TTL
    invitation.save(update_fields=["token_hash", "expires_at"])
    activity_services.audit_record(
        org=invitation.organization, actor=actor, action="invitation.resent", target=invitation
    )
    return _invitation_send(invitation=invitation, token=token, base_url=base_url)


def invitation_revoke(*, actor: Membership, invitation: Invitation) -> Invitation:
    role_require(actor, Role.ADMIN, "revoke invitations")
    if invitation.accepted_at:
        raise Conflict("This invitation was already accepted; remove the member instead.")
    if not invitation.revoked_at:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        activity_services.audit_record(
            org=invitation.organization,
            actor=actor,
            action="invitation.revoked",
            target=invitation,
        )
    return invitation


def invitation_find(*, token: str) -> Invitation | None:
    return (
        Invitation.objects.select_related("organization")
        .filter(token_hash=token_hash(token))
        .first()
    )


def invitation_problem(*, invitation: Invitation | None) -> str | None:
    """Why this link cannot be used, in words for the page, or None if it can."""
    if invitation is None:
        return "This invitation link is not valid. Ask for a new one."
    if invitation.accepted_at:
        return "This invitation has already been used."
    if invitation.revoked_at:
        return "This invitation was revoked. Ask an administrator for a new one."
    if invitation.is_expired:
        return "This invitation has expired. Ask an administrator to resend it."
    return None


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    problem = invitation_problem(invitation=invitation)
    if problem:
        raise Conflict(problem)
    if email_normalize(user.email) != email_normalize(invitation.email):
        raise Forbidden(
            f"This invitation was sent to {invitation.email}, but you are logged in as "
            f"{user.email}. Log out and open the link again."
        )
    now = timezone.now()
    # Compare-and-set: two clicks on the same link cannot both succeed.
    claimed = Invitation.objects.filter(
        pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).update(accepted_at=now, accepted_by=user)
    if not claimed:
        raise Conflict("This invitation has already been used.")
    verification.mark_verified(user=user)  # the link was emailed to this address
    membership, _created = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
    )
    activity_services.audit_record(
        org=invitation.organization,
        actor=user,
        action="member.joined",
        target=membership,
        details={"role": membership.role},
    )
    return membership


@transaction.atomic
def invitation_accept_with_signup(
    *, invitation: Invitation, password: str, full_name: str
) -> tuple[User, Membership]:
    user = user_create(email=invitation.email, password=password, full_name=full_name)
    return user, invitation_accept(invitation=invitation, user=user)


def invitations_expire() -> int:
    """Housekeeping: delete never-accepted invitations that expired a while ago."""
    cutoff = timezone.now() - settings.INVITATION_RETENTION
    deleted, _ = Invitation.objects.filter(accepted_at__isnull=True, expires_at__lt=cutoff).delete()
    return deleted
