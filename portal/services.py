"""Writes for users, organizations, memberships and invitations.

Every role rule of the product is enforced here, so the pages, the API and the admin commands
cannot disagree: nobody grants a role above their own, nobody changes someone ranked above
them, only owners touch owners, and the last owner can neither leave nor be demoted.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from portal.errors import ApplicationError
from portal.models import Invitation, Membership, Organization, User, email_normalize, token_hash
from portal.tenancy import ROLE_RANK, Role, role_at_least, roles_grantable_by

# --- Users and organizations --------------------------------------------------------------------


def _slug_unique(name: str) -> str:
    base = slugify(name)[:50].strip("-") or "org"
    slug = base
    while Organization.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


@transaction.atomic
def organization_create(*, name: str, owner: User) -> Organization:
    name = name.strip()
    if not name:
        raise ApplicationError("Give the organization a name.", field="name")
    org = Organization.objects.create(name=name, slug=_slug_unique(name))
    Membership.objects.create(organization=org, user=owner, role=Role.OWNER)
    return org


@transaction.atomic
def user_create(*, email: str, password: str | None, full_name: str = "") -> User:
    email = email_normalize(email)
    if User.objects.filter(email__iexact=email).exists():
        raise ApplicationError("An account with this email already exists.", field="email")
    try:
        with transaction.atomic():
            return User.objects.create_user(email=email, password=password, full_name=full_name)
    except IntegrityError:  # a concurrent sign-up with the same email won the race
        raise ApplicationError(
            "An account with this email already exists.", field="email"
        ) from None


@transaction.atomic
def user_signup(
    *, email: str, password: str, full_name: str, organization_name: str
) -> tuple[User, Organization]:
    """Sign up: the user and their first organization, of which they are the owner."""
    user = user_create(email=email, password=password, full_name=full_name)
    org = organization_create(name=organization_name, owner=user)
    return user, org


def _require(actor: Membership, minimum: str, action: str) -> None:
    if not role_at_least(actor.role, minimum):
        raise ApplicationError(f"Only {Role(minimum).label.lower()}s and above can {action}.")


def organization_rename(*, actor: Membership, name: str) -> Organization:
    _require(actor, Role.OWNER, "rename the organization")
    name = name.strip()
    if not name:
        raise ApplicationError("Give the organization a name.", field="name")
    org = actor.organization
    org.name = name
    org.save(update_fields=["name"])
    return org


def organization_delete(*, actor: Membership, confirm_slug: str) -> None:
    _require(actor, Role.OWNER, "delete the organization")
    org = actor.organization
    if confirm_slug.strip() != org.slug:
        raise ApplicationError(f"Type {org.slug} to confirm.", field="confirm")
    org.delete()


# --- Memberships --------------------------------------------------------------------------------


def _owners_locked(org: Organization) -> int:
    """Lock the organization's owner rows and count them (last-owner checks must not race)."""
    return len(list(Membership.objects.for_org(org).owners().select_for_update()))


@transaction.atomic
def membership_role_change(*, actor: Membership, target: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise ApplicationError("Choose a valid role.", field="role")
    _require(actor, Role.ADMIN, "change roles")
    if role not in roles_grantable_by(actor.role):
        raise ApplicationError("You cannot grant a role above your own.", field="role")
    if ROLE_RANK[target.role] > ROLE_RANK[actor.role]:
        raise ApplicationError("You cannot change the role of someone ranked above you.")
    if target.role == role:
        return target
    if target.role == Role.OWNER and _owners_locked(target.organization) <= 1:
        raise ApplicationError(
            "The last owner cannot be demoted. Make someone else an owner first."
        )
    target.role = role
    target.save(update_fields=["role"])
    return target


@transaction.atomic
def membership_remove(*, actor: Membership, target: Membership) -> None:
    """Remove a member, or leave (when actor is target)."""
    leaving = actor.pk == target.pk
    if not leaving:
        _require(actor, Role.ADMIN, "remove members")
        if ROLE_RANK[target.role] > ROLE_RANK[actor.role]:
            raise ApplicationError("You cannot remove someone ranked above you.")
    if target.role == Role.OWNER and _owners_locked(target.organization) <= 1:
        raise ApplicationError(
            "The last owner cannot leave. Make someone else an owner first, "
            "or delete the organization."
        )
    target.delete()


# --- Invitations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str  # shown once, in the email; only its hash is stored
    link: str


def invitation_link(*, base_url: str, token: str) -> str:
    return base_url.rstrip("/") + reverse("invitation_accept", kwargs={"token": token})


def _invitation_send(*, invitation: Invitation, token: str, base_url: str) -> IssuedInvitation:
    link = invitation_link(base_url=base_url, token=token)
    context = {"invitation": invitation, "link": link, "ttl_days": settings.INVITATION_TTL.days}
    send_mail(
        subject=f"You are invited to {invitation.organization.name} on bitHuman Portal",
        message=render_to_string("portal/emails/invitation.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )
    return IssuedInvitation(invitation=invitation, token=token, link=link)


def _token_new() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


@transaction.atomic
def invitation_create(
    *, actor: Membership, email: str, role: str, base_url: str
) -> IssuedInvitation:
    _require(actor, Role.ADMIN, "invite people")
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
    token, hashed = _token_new()
    invitation = Invitation.objects.create(
        organization=org,
        email=email,
        role=role,
        invited_by=actor.user,
        token_hash=hashed,
        expires_at=timezone.now() + settings.INVITATION_TTL,
    )
    return _invitation_send(invitation=invitation, token=token, base_url=base_url)


@transaction.atomic
def invitation_resend(
    *, actor: Membership, invitation: Invitation, base_url: str
) -> IssuedInvitation:
    """A fresh link and a fresh 7 days; the old link stops working."""
    _require(actor, Role.ADMIN, "resend invitations")
    if invitation.accepted_at or invitation.revoked_at:
        raise ApplicationError(f"This invitation was {invitation.state}; invite again instead.")
    if not role_at_least(actor.role, invitation.role):
        raise ApplicationError("You cannot grant a role above your own.")
    token, hashed = _token_new()
    invitation.token_hash = hashed
    invitation.expires_at = timezone.now() + settings.INVITATION_TTL
    invitation.save(update_fields=["token_hash", "expires_at"])
    return _invitation_send(invitation=invitation, token=token, base_url=base_url)


def invitation_revoke(*, actor: Membership, invitation: Invitation) -> Invitation:
    _require(actor, Role.ADMIN, "revoke invitations")
    if invitation.accepted_at:
        raise ApplicationError("This invitation was already accepted; remove the member instead.")
    if not invitation.revoked_at:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
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
        raise ApplicationError(problem)
    if email_normalize(user.email) != email_normalize(invitation.email):
        raise ApplicationError(
            f"This invitation was sent to {invitation.email}, but you are logged in as "
            f"{user.email}. Log out and open the link again."
        )
    now = timezone.now()
    # Compare-and-set: two clicks on the same link cannot both succeed.
    claimed = Invitation.objects.filter(
        pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).update(accepted_at=now, accepted_by=user)
    if not claimed:
        raise ApplicationError("This invitation has already been used.")
    membership, _created = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
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
