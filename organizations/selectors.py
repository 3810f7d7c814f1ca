"""Reads for organizations, memberships and invitations."""

from __future__ import annotations

from django.db.models import QuerySet

from portal.models import Invitation, Membership, Organization, User


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
