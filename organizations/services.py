"""Writes for users, organizations and memberships, and staff suspension (invitations.py,
connections.py and apikeys.py hold the rest of the organizations layer's writes).

Every role rule of the product is enforced here, so the pages, the API and the admin commands
cannot disagree: nobody grants a role above their own, nobody changes someone ranked above
them, only owners touch owners, and the last owner can neither leave nor be demoted.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from activity import services as activity_services
from organizations import connections, verification
from portal.errors import ApplicationError, Conflict, Forbidden
from portal.models import (
    ApiKey,
    Invitation,
    Membership,
    Organization,
    User,
    email_normalize,
)
from portal.tenancy import ROLE_RANK, Role, role_require, roles_grantable_by
from portal.text import one_line_require

logger = logging.getLogger(__name__)

# --- Users and organizations --------------------------------------------------------------------


def _slug_unique(name: str) -> str:
    base = slugify(name)[:50].strip("-") or "org"
    slug = base
    while Organization.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


@transaction.atomic
def organization_create(*, name: str, owner: User) -> Organization:
    verification.require_verified(owner, "create an organization")
    name = one_line_require(name, field="name").strip()
    if not name:
        raise ApplicationError("Give the organization a name.", field="name")
    org = Organization.objects.create(name=name, slug=_slug_unique(name))
    Membership.objects.create(organization=org, user=owner, role=Role.OWNER)
    connections.connection_create(org=org)
    return org


@transaction.atomic
def user_create(
    *, email: str, password: str | None, full_name: str = "", email_verified: bool = True
) -> User:
    """An account. `email_verified`: the caller knows the address is theirs (an invitation
    link, an operator's command); sign-up passes False until the link is opened."""
    email = email_normalize(email)
    one_line_require(full_name, field="full_name")
    if User.objects.filter(email__iexact=email).exists():
        raise ApplicationError("An account with this email already exists.", field="email")
    try:
        with transaction.atomic():
            return User.objects.create_user(
                email=email,
                password=password,
                full_name=full_name,
                email_verified_at=timezone.now() if email_verified else None,
            )
    except IntegrityError:  # a concurrent sign-up with the same email won the race
        raise ApplicationError(
            "An account with this email already exists.", field="email"
        ) from None


def organization_rename(*, actor: Membership, name: str) -> Organization:
    role_require(actor, Role.OWNER, "rename the organization")
    name = one_line_require(name, field="name").strip()
    if not name:
        raise ApplicationError("Give the organization a name.", field="name")
    org = actor.organization
    org.name = name
    org.save(update_fields=["name"])
    return org


def organization_delete(*, actor: Membership, confirm_slug: str) -> None:
    role_require(actor, Role.OWNER, "delete the organization")
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
    role_require(actor, Role.ADMIN, "change roles")
    if role not in roles_grantable_by(actor.role):
        raise ApplicationError("You cannot grant a role above your own.", field="role")
    if ROLE_RANK[target.role] > ROLE_RANK[actor.role]:
        raise Forbidden("You cannot change the role of someone ranked above you.")
    if target.role == role:
        return target
    if target.role == Role.OWNER and _owners_locked(target.organization) <= 1:
        raise Conflict("The last owner cannot be demoted. Make someone else an owner first.")
    revoked = _invitations_revoke_sent_by(target, above=role)
    details: dict[str, Any] = {"from": target.role, "to": role}
    if revoked:
        details["invitations_revoked"] = revoked
    activity_services.audit_record(
        org=target.organization,
        actor=actor,
        action="member.role_changed",
        target=target,
        details=details,
    )
    target.role = role
    target.save(update_fields=["role"])
    return target


def _invitations_revoke_sent_by(member: Membership, *, above: str | None = None) -> list[str]:
    """Revoke the pending invitations `member` sent in their organization: those for a role
    above `above` (the role they keep), or all of them (they leave). Their emails, for the audit
    log. An invitation outlives no right of its sender: a removed admin cannot come back as
    admin through an invitation to their own second address."""
    pending = (
        Invitation.objects.for_org(member.organization)
        .pending()
        .filter(invited_by_id=member.user_id)
    )
    if above is not None:
        pending = pending.filter(
            role__in=[r for r in Role.values if ROLE_RANK[r] > ROLE_RANK[above]]
        )
    invitations = list(pending.select_for_update())
    Invitation.objects.filter(pk__in=[i.pk for i in invitations]).update(revoked_at=timezone.now())
    return [invitation.email for invitation in invitations]


def member_api_keys(*, target: Membership) -> list[ApiKey]:
    """The usable API keys `target` created in their organization (shown before removing them:
    a key acts for the organization, not its creator, so it survives them unless revoked)."""
    return list(
        ApiKey.objects.for_org(target.organization).usable().filter(created_by_id=target.user_id)
    )


@transaction.atomic
def membership_remove(
    *, actor: Membership, target: Membership, revoke_api_keys: bool = False
) -> MemberRemoved:
    """Remove a member, or leave (when actor is target). The pending invitations they sent are
    revoked; the API keys they created are revoked too when `revoke_api_keys`, else kept (the
    remover was shown them); the audit entry records which."""
    leaving = actor.pk == target.pk
    if not leaving:
        role_require(actor, Role.ADMIN, "remove members")
        if ROLE_RANK[target.role] > ROLE_RANK[actor.role]:
            raise Forbidden("You cannot remove someone ranked above you.")
    if target.role == Role.OWNER and _owners_locked(target.organization) <= 1:
        raise Conflict(
            "The last owner cannot leave. Make someone else an owner first, "
            "or delete the organization."
        )
    invitations = _invitations_revoke_sent_by(target)
    keys = member_api_keys(target=target)
    if revoke_api_keys and keys:
        ApiKey.objects.filter(pk__in=[key.pk for key in keys], revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        for key in keys:
            activity_services.audit_record(
                org=target.organization,
                actor=actor,
                action="api_key.revoked",
                target=key,
                details={"reason": "its creator was removed"},
            )
    details: dict[str, Any] = {"role": target.role, "left": leaving}
    if invitations:
        details["invitations_revoked"] = invitations
    if keys:
        details["api_keys"] = [f"{key.name} ({key.display})" for key in keys]
        details["api_keys_action"] = "revoked" if revoke_api_keys else "kept"
    activity_services.audit_record(
        org=target.organization,
        actor=actor,
        action="member.removed",
        target=target,
        details=details,
    )
    target.delete()
    return MemberRemoved(
        invitations_revoked=len(invitations),
        api_keys=keys,
        api_keys_revoked=revoke_api_keys and bool(keys),
    )


@dataclass(frozen=True)
class MemberRemoved:
    invitations_revoked: int
    api_keys: list[ApiKey]  # the usable keys they had created
    api_keys_revoked: bool


# --- Suspension (staff) -------------------------------------------------------------------------


@transaction.atomic
def organization_suspend(*, org: Organization, staff_user: User, reason: str) -> bool:
    """Suspend (Django admin): members keep reading; generating, sessions and the API stop
    (portal.tenancy.organization_active_require). False if it already was."""
    reason = " ".join(reason.split())[:300]
    if not reason:
        raise ApplicationError("Say why: members see the reason.", field="reason")
    changed = Organization.objects.filter(pk=org.pk, suspended_at__isnull=True).update(
        suspended_at=timezone.now(), suspended_reason=reason
    )
    if changed:
        org.refresh_from_db()
        activity_services.audit_record(
            org=org,
            actor=staff_user,
            action="organization.suspended",
            target=org,
            details={"reason": reason},
            staff=True,
        )
    return bool(changed)


@transaction.atomic
def organization_unsuspend(*, org: Organization, staff_user: User) -> bool:
    changed = Organization.objects.filter(pk=org.pk, suspended_at__isnull=False).update(
        suspended_at=None, suspended_reason=""
    )
    if changed:
        org.refresh_from_db()
        activity_services.audit_record(
            org=org, actor=staff_user, action="organization.unsuspended", target=org, staff=True
        )
    return bool(changed)
