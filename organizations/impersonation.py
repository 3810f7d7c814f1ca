"""Staff impersonation: a staff member sees the portal as one member sees it.

Started from the admin (a user's page, "Impersonate") with a written reason; it ends by itself
after IMPERSONATION_MINUTES (checked on every request) or with the banner's "Stop" button, and
the staff member is back in their own session. Its start, its end and every write made during
it are in the audit log of each organization concerned, with the staff member and the reason:
the organization's admins see them on the Activity page.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from portal.errors import ApplicationError, Forbidden
from portal.models import Membership, Organization, User
from portal.outage import DATABASE_ERRORS

SESSION_KEY = "impersonation"
AUTH_BACKEND = "portal.backends.EmailBackend"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Pages that would change who the person is, or that staff have no business in.
REFUSED_NAMES = {"password_change", "two_factor", "verification_resend"}


def can_impersonate(staff: User, target: User) -> str | None:
    """Why `staff` may not impersonate `target`, or None."""
    if not (staff.is_active and staff.is_staff and staff.has_perm("portal.change_user")):
        return "Only staff who may change users can impersonate them."
    if target.pk == staff.pk:
        return "You cannot impersonate yourself."
    if target.is_staff or target.is_superuser:
        return "Staff accounts cannot be impersonated."
    if not target.is_active:
        return "This account is inactive."
    return None


def _memberships(user_id: int) -> list[Membership]:
    return list(Membership.objects.filter(user_id=user_id).select_related("organization", "user"))


def _record(
    *, action: str, data: dict[str, Any], orgs: list[Organization] | None = None, **details: Any
) -> None:
    from activity import services as activity_services

    staff = User.objects.filter(pk=data["staff_id"]).first()
    memberships = _memberships(data["user_id"])
    targets = {m.organization_id: m for m in memberships}
    for org in orgs if orgs is not None else [m.organization for m in memberships]:
        activity_services.audit_record(
            org=org,
            actor=staff,
            staff=True,
            action=action,
            target=targets.get(org.pk),
            details={
                "staff": data["staff_email"],
                "impersonated": data["user_email"],
                "reason": data["reason"],
                **details,
            },
        )


def start(request: HttpRequest, *, target: User, reason: str) -> None:
    staff: User = request.user  # type: ignore[assignment]
    reason = " ".join(reason.split())
    if len(reason) < 10:
        raise ApplicationError(
            "Write why you need to see this account (10 characters at least).", field="reason"
        )
    problem = can_impersonate(staff, target)
    if problem:
        raise Forbidden(problem)
    now = time.time()
    data = {
        "staff_id": staff.pk,
        "staff_email": staff.email,
        "user_id": target.pk,
        "user_email": target.email,
        "reason": reason[:500],
        "started": now,
        "expires": now + settings.IMPERSONATION_MINUTES * 60,
    }
    login(request, target, backend=AUTH_BACKEND)  # a new session: nothing of the staff one
    request.session[SESSION_KEY] = data
    _record(action="impersonation.started", data=data, minutes=settings.IMPERSONATION_MINUTES)


def stop(request: HttpRequest, *, why: str) -> None:
    """End it (the button, or the time box) and give the staff member their own session back."""
    data = request.session.get(SESSION_KEY)
    if not data:
        return
    _record(action="impersonation.ended", data=data, why=why)
    staff = User.objects.filter(pk=data["staff_id"], is_active=True, is_staff=True).first()
    if staff is not None:
        login(request, staff, backend=AUTH_BACKEND)  # flushes the impersonated session
    else:
        from django.contrib.auth import logout

        logout(request)
    request.session.pop(SESSION_KEY, None)


class ImpersonationMiddleware:
    """Marks impersonated requests (`request.impersonation`, the banner), ends expired ones,
    refuses account-changing pages, and audits every write made during one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        try:
            data = session.get(SESSION_KEY) if session is not None else None
        except DATABASE_ERRORS:  # the database is down: the view's own query answers 503
            data = None
        if not data:
            return self.get_response(request)
        if not request.user.is_authenticated or request.user.pk != data["user_id"]:
            session.pop(SESSION_KEY, None)  # type: ignore[union-attr]
            return self.get_response(request)
        if time.time() >= data["expires"]:
            stop(request, why="time box")
            messages.info(request, "The impersonation ended: its time was up.")
            return redirect("admin:index")
        match = getattr(request, "resolver_match", None)
        name = match.url_name if match else None
        if name is None:
            from django.urls import resolve
            from django.urls.exceptions import Resolver404

            try:
                name = resolve(request.path_info).url_name
            except Resolver404:
                name = None
        if name == "logout":
            stop(request, why="stopped")
            return redirect("admin:index")
        if name in REFUSED_NAMES and request.method in WRITE_METHODS:
            return HttpResponse("Not while impersonating.", status=403, content_type="text/plain")
        from activity.services import request_impersonator

        request.impersonation = data  # type: ignore[attr-defined]
        token = request_impersonator.set(data["staff_email"])
        try:
            response = self.get_response(request)
        finally:
            request_impersonator.reset(token)
        if request.method in WRITE_METHODS and name != "impersonation_stop":
            org = getattr(request, "organization", None)
            _record(
                action="impersonation.write",
                data=data,
                orgs=[org] if org is not None else None,
                method=request.method,
                path=request.path[:200],
                status=response.status_code,
            )
        return response
