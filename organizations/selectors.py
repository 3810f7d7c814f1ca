"""Reads for organizations, memberships and invitations."""

from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet

from portal.models import ApiKey, Invitation, Membership, Organization, User
from portal.tenancy import tenant_get


def membership_list_for_user(*, user: User) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(user=user)
        .select_related("organization")
        .order_by("organization__name")
    )


def membership_list(*, org: Organization) -> QuerySet[Membership]:
    return Membership.objects.for_org(org).select_related("user").order_by("user__email")


def invitation_list_open(*, org: Organization) -> QuerySet[Invitation]:
    """Invitations not accepted or revoked: pending ones and expired ones that can be resent."""
    return Invitation.objects.for_org(org).pending().select_related("invited_by")


def invitations_sent_by(*, member: Membership) -> QuerySet[Invitation]:
    """The pending invitations this member sent in their organization."""
    return (
        Invitation.objects.for_org(member.organization)
        .pending()
        .filter(invited_by_id=member.user_id)
    )


def user_exists(*, email: str) -> bool:
    return User.objects.filter(email__iexact=email.strip()).exists()


def membership_get(*, org: Organization, public_id: str | UUID) -> Membership:
    return tenant_get(Membership.objects.for_org(org).select_related("user"), public_id)


def invitation_get(*, org: Organization, public_id: str | UUID) -> Invitation:
    return tenant_get(Invitation.objects.for_org(org), public_id)


def api_key_get(*, org: Organization, public_id: str | UUID) -> ApiKey:
    return tenant_get(ApiKey.objects.for_org(org), public_id)
