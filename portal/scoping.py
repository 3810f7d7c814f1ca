"""Roles and the base of tenant data, below the models (portal.models imports this module;
portal.tenancy builds the request-side rules on both).

- `Role` and `role_at_least`: the one role hierarchy and the one role check.
- `OrgScopedModel`: the abstract base of every model that belongs to an organization; its
  queryset has `for_org(org)`, and every lookup of tenant data goes through it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Self

from django.db import models

if TYPE_CHECKING:
    from portal.models import Organization


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


# What each role may do, from least to most: viewers read; members also create and operate
# agents and sessions; admins also manage members, invitations, API keys and settings; owners
# also rename or delete the organization and change owners.
ROLE_RANK: dict[str, int] = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


def role_at_least(role: str, minimum: str) -> bool:
    """The one role check: does `role` include everything `minimum` may do?"""
    return ROLE_RANK[role] >= ROLE_RANK[minimum]


def roles_grantable_by(role: str) -> list[str]:
    """Nobody grants a role above their own."""
    return [r for r in Role.values if role_at_least(role, r)]


class OrgScopedQuerySet(models.QuerySet):
    def for_org(self, org: Organization) -> Self:
        return self.filter(organization=org)


class OrgScopedModel(models.Model):
    """Abstract base for tenant data: an organization and an opaque public id for URLs."""

    organization = models.ForeignKey("portal.Organization", on_delete=models.CASCADE)
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        abstract = True
