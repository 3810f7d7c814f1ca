"""The account's live sessions page (admins and above): every live and recent runtime session of
the organization's bitHuman account with its KPIs, Terminate per row (confirmed), and the
owners' emergency "Revoke all runtime keys" (typed confirmation). Thin: sessions.live_sessions
does the work."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from portal.confirm import confirm_page, confirmed
from portal.errors import ApplicationError
from portal.forms import error_show
from portal.models import Membership
from portal.tenancy import Role, org_view, role_at_least
from sessions import live_sessions
from sessions.forms import RevokeAllForm


def _page_url(membership: Membership) -> str:
    return reverse("live_sessions", args=[membership.organization.slug])


def _render(
    request: HttpRequest, membership: Membership, form: RevokeAllForm, status: int = 200
) -> HttpResponse:
    listing = problem = None
    try:
        listing = live_sessions.live_sessions_get(actor=membership)
    except ApplicationError as error:
        problem = error.message
    context = {
        "listing": listing,
        "problem": problem,
        "is_owner": role_at_least(membership.role, Role.OWNER),
        "revoke_form": form,
        "revoke_phrase": live_sessions.revoke_all_phrase(actor=membership),
    }
    return render(request, "sessions/live_sessions.html", context, status=status)


@org_view({"GET": Role.ADMIN})
def live_sessions_page(request: HttpRequest, membership: Membership) -> HttpResponse:
    return _render(request, membership, RevokeAllForm())


@org_view({"POST": Role.ADMIN})
def live_session_terminate(
    request: HttpRequest, membership: Membership, runtime_id: str
) -> HttpResponse:
    # Another organization's (or an unknown) session is not found, before any question.
    live_sessions.live_session_known_require(actor=membership, runtime_session_id=runtime_id)
    if not confirmed(request):
        room = request.POST.get("room", "")[:200]
        return confirm_page(
            request,
            title="Terminate this live session?",
            message=(
                f"bitHuman ends the session{f' in room {room}' if room else ''} now: the avatar "
                "disconnects, the conversation closes and billing stops. Whoever is in it "
                "(an operator, a visitor on your website) is cut off. API keys are not touched."
            ),
            button="Terminate session",
            cancel_url=_page_url(membership),
        )
    try:
        note = live_sessions.live_session_terminate(actor=membership, runtime_session_id=runtime_id)
    except ApplicationError as error:
        error_show(request, error)
    else:
        messages.success(request, f"Session terminated. bitHuman: {note}")
    return redirect(_page_url(membership))


@org_view({"POST": Role.OWNER})
def runtime_revoke_all(request: HttpRequest, membership: Membership) -> HttpResponse:
    form = RevokeAllForm(request.POST)
    if form.is_valid():
        try:
            answer = live_sessions.runtime_keys_revoke_all(
                actor=membership,
                confirmation=form.cleaned_data["confirmation"],
                reason=form.cleaned_data["reason"],
            )
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            wait = answer.effective_in_seconds
            when = f" within {wait} seconds" if wait else ""
            messages.warning(
                request,
                f"All runtime keys revoked: live sessions stop{when}. "
                f"bitHuman: {answer.note or 'runtime access suspended'}",
            )
            return redirect(_page_url(membership))
    return _render(request, membership, form, status=400)
