"""Tenancy in one place.

- `OrgScopedModel`: the abstract base of every model that belongs to an organization; its
  queryset has `for_org(org)`, and every lookup of tenant data goes through it.
- `Role` and `role_at_least`: the one role hierarchy and the one role check.
- `membership_resolve`: (user, organization slug) -> Membership, or Http404 for a foreign or
  missing organization, identically.
- `org_view`: the decorator every organization page uses. It resolves the organization from the
  URL's `org_slug`, checks the method and the role per method (one mapping per view) and hands
  the view its `membership`.

A foreign or missing organization or object answers 404, never 403 or a redirect. A member whose
role is too low for an action in their *own* organization gets 403: they know it exists.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed

from portal.errors import Forbidden, NotFound
from portal.models import ApiKey, Membership, Organization
from portal.scoping import (
    ROLE_RANK,
    OrgScopedModel,
    OrgScopedQuerySet,
    Role,
    role_at_least,
    roles_grantable_by,
)

__all__ = [
    "ROLE_RANK",
    "Actor",
    "ApiKeyActor",
    "OrgScopedModel",
    "OrgScopedQuerySet",
    "Role",
    "membership_resolve",
    "org_view",
    "organization_active_require",
    "public_id_parse",
    "role_at_least",
    "role_require",
    "roles_grantable_by",
    "tenant_get",
]


@dataclass(frozen=True)
class ApiKeyActor:
    """An organization API key acting through the services, as a person acts through their
    membership: the key's organization, with member rights (a key is limited by its scopes, which
    the API checks, not by a role). Nothing is saved for it; the audit log names the key."""

    api_key: ApiKey
    role: str = Role.MEMBER
    user: None = None
    user_id: None = None

    @property
    def organization(self) -> Organization:
        return self.api_key.organization

    @property
    def organization_id(self) -> int:
        return self.api_key.organization_id


# Who acts in a service: a person (their membership) or an API key.
Actor = Membership | ApiKeyActor


def membership_resolve(*, user: Any, org_slug: str) -> Membership:
    """The user's membership in the organization named by the URL, or 404 (foreign or missing)."""
    if not user.is_authenticated:
        raise Http404("No such organization.")
    try:
        return Membership.objects.select_related("organization", "user").get(
            user=user, organization__slug=org_slug
        )
    except Membership.DoesNotExist:
        raise Http404("No such organization.") from None


class OrganizationSuspended(Forbidden):
    default_code = "organization_suspended"


def organization_active_require(org: Organization) -> None:
    """The one check of a suspension: the services that generate, start or run sessions, and the
    API's authentication, call it."""
    if org.suspended_at is not None:
        reason = f": {org.suspended_reason}" if org.suspended_reason else ""
        raise OrganizationSuspended(
            f"{org.name} is suspended by bitHuman Portal staff{reason}. You can still sign in and "
            "read everything; contact support to lift the suspension."
        )


def role_require(actor: Actor, minimum: str, action: str = "") -> None:
    """The one role check, for pages (org_view) and every service: Forbidden (403) when the
    actor's role is below `minimum`. `action` ("delete agents") makes the message specific."""
    if not role_at_least(actor.role, minimum):
        label = Role(minimum).label
        if action:
            above = "" if minimum == Role.OWNER else " and above"
            raise Forbidden(f"Only {label.lower()}s{above} can {action}.")
        raise Forbidden(f"This needs the {label} role or higher.")


def public_id_parse(value: str | UUID) -> UUID:
    """Ids are opaque strings: one that is not even a UUID is simply not found (NotFound)."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFound() from None


def tenant_get[M: models.Model](queryset: QuerySet[M], public_id: str | UUID) -> M:
    """The one object with this public id in an organization-scoped queryset (`for_org(org)`),
    or NotFound (404 for pages and the API alike): a missing id, another organization's and a
    malformed one answer the same. Each app's selectors wrap it (`agents.selectors.agent_get`)."""
    found = queryset.filter(public_id=public_id_parse(public_id)).first()
    if found is None:
        raise NotFound()
    return found


OrgView = Callable[..., HttpResponse]


def two_factor_enabled(user: Any) -> bool:
    """The user has a confirmed authenticator (django-otp TOTP)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def two_factor_shown(request: HttpRequest) -> bool:
    """This session signed in with a second factor (django-otp), or is staff impersonating a
    member (the staff member signed in to the admin; organizations.impersonation)."""
    verified = getattr(request.user, "is_verified", None)
    return bool(verified and verified()) or bool(getattr(request, "impersonation", None))


def two_factor_redirect(request: HttpRequest, org: Any) -> HttpResponse:
    """Members of an organization that requires two-factor sign-in, without it in this session:
    to the code page when they have it, else to its setup."""
    from django.contrib import messages
    from django.shortcuts import redirect
    from django.urls import reverse
    from django.utils.http import urlencode

    query = "?" + urlencode({"next": request.get_full_path()})
    if two_factor_enabled(request.user):
        return redirect(reverse("login_otp") + query)
    messages.warning(request, f"{org.name} requires two-factor sign-in: turn it on to continue.")
    return redirect(reverse("two_factor") + query)


def org_view(permissions: dict[str, str]) -> Callable[[OrgView], OrgView]:
    """Decorate a view under /o/<org_slug>/ with its permissions: HTTP method -> minimum role.

    The organization is resolved first (foreign or missing: 404, whatever the method), then the
    method is checked (405), then the role (403). The view is called as
    `view(request, membership, **other_url_kwargs)`. HEAD follows GET.
    """
    allowed = {method.upper(): role for method, role in permissions.items()}
    if "GET" in allowed:
        allowed.setdefault("HEAD", allowed["GET"])

    def decorator(view: OrgView) -> OrgView:
        @login_required
        @functools.wraps(view)
        def wrapper(request: HttpRequest, org_slug: str, **kwargs: Any) -> HttpResponse:
            membership = membership_resolve(user=request.user, org_slug=org_slug)
            method = (request.method or "GET").upper()
            if method not in allowed:
                return HttpResponseNotAllowed(sorted(allowed))
            role_require(membership, allowed[method])
            if membership.organization.require_two_factor and not two_factor_shown(request):
                return two_factor_redirect(request, membership.organization)
            request.organization = membership.organization  # type: ignore[attr-defined]
            request.membership = membership  # type: ignore[attr-defined]
            return view(request, membership, **kwargs)

        wrapper.org_permissions = allowed  # type: ignore[attr-defined]
        return wrapper

    return decorator
