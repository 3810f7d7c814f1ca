"""Pages of the account's security: sign-up confirmation, two-factor sign-in, impersonation.

Thin, like portal/views.py: they call portal.verification, portal.twofactor and
portal.impersonation.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from portal import verification
from portal.errors import ApplicationError
from portal.forms import EmailForm, apply_error
from portal.models import User

AUTH_BACKEND = "portal.backends.EmailBackend"
SIGNUP_EMAIL_SESSION = "signup_email"


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/")


# --- Sign-up confirmation -----------------------------------------------------------------------


@require_http_methods(["GET", "HEAD", "POST"])
def signup_sent(request: HttpRequest) -> HttpResponse:
    """ "Check your email", with a form to send the link again (limited per address)."""
    email = request.session.get(SIGNUP_EMAIL_SESSION, "")
    form = EmailForm(request.POST or None, initial={"email": email})
    if request.method == "POST" and form.is_valid():
        try:
            verification.resend(email=form.cleaned_data["email"], base_url=_base_url(request))
        except ApplicationError as error:
            apply_error(form, error)
        else:
            messages.success(
                request,
                f"If {form.cleaned_data['email']} is waiting for confirmation, a new link is "
                "on its way.",
            )
            return redirect("signup_sent")
    return render(request, "registration/signup_sent.html", {"form": form, "email": email})


@require_http_methods(["GET", "HEAD", "POST"])
def signup_verify(request: HttpRequest, token: str) -> HttpResponse:
    """The link in the email: a button (POST) confirms, so mail scanners that open links do
    not. This browser is logged in when it is the one that signed up."""
    user = verification.peek(token=token)
    if user is None:
        return render(
            request,
            "registration/signup_verify.html",
            {"problem": verification.INVALID},
            status=400,
        )
    if request.method != "POST":
        return render(request, "registration/signup_verify.html", {"account": user})
    try:
        done = verification.verify(token=token)
    except ApplicationError as error:
        return render(
            request, "registration/signup_verify.html", {"problem": error.message}, status=400
        )
    same_browser = request.session.get(SIGNUP_EMAIL_SESSION) == done.user.email
    if same_browser or (request.user.is_authenticated and request.user.pk == done.user.pk):
        request.session.pop(SIGNUP_EMAIL_SESSION, None)
        if not request.user.is_authenticated:
            login(request, done.user, backend=AUTH_BACKEND)
        if done.organization is not None:
            messages.success(
                request, f"Your email is confirmed. Welcome! {done.organization.name} is ready."
            )
            return redirect("org_home", org_slug=done.organization.slug)
        messages.success(request, "Your email is confirmed.")
        return redirect("home")
    messages.success(request, "Your email is confirmed. Log in to continue.")
    return redirect("login")


@login_required
@require_POST
def verification_resend(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    try:
        verification.resend_to_user(user=user, base_url=_base_url(request))
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"A new confirmation link is on its way to {user.email}.")
    return redirect("organization_create")


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's, plus: a reset through the emailed link also confirms the address."""

    def form_valid(self, form: Form) -> Any:
        response = super().form_valid(form)  # type: ignore[arg-type]
        if self.user is not None:
            verification.mark_verified(user=self.user)
        return response
