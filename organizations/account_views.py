"""A person's pages, outside any organization: the front page, sign-up and its confirmation,
log-in with two-factor sign-in, the account page, a new organization, accepting an invitation,
and the end of staff impersonation. Thin: they call the organizations layer's services,
verification, twofactor and impersonation. (Pages inside an organization: views.py.)
"""

from __future__ import annotations

import time
from typing import Any

import django_otp
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from organizations import (
    account_views,
    impersonation,
    invitations,
    selectors,
    services,
    twofactor,
    verification,
)
from organizations.forms import (
    AccountForm,
    EmailForm,
    InvitationSignupForm,
    LoginForm,
    OrganizationForm,
    OtpForm,
    SignupForm,
)
from portal.errors import ApplicationError
from portal.forms import error_show
from portal.models import User

AUTH_BACKEND = "portal.backends.EmailBackend"
SIGNUP_EMAIL_SESSION = "signup_email"


def base_url_of(request: HttpRequest) -> str:
    return request.build_absolute_uri("/")


def _org_home(org_slug: str) -> str:
    return reverse("org_home", kwargs={"org_slug": org_slug})


# --- Entry, sign up, log in ---------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    """Email and password; people with two-factor sign-in then give a code (login_otp) before
    the session is theirs."""

    form_class = LoginForm
    redirect_authenticated_user = True

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        user = form.get_user()
        if twofactor.enabled(user):
            account_views.otp_pending_set(self.request, user, self.get_success_url())
            return redirect("login_otp")
        return super().form_valid(form)


@require_http_methods(["GET", "HEAD", "POST"])
def home(request: HttpRequest) -> HttpResponseBase:
    """Anonymous visitors get the front page (what the portal does, with the login form); members
    go to their last (or first) organization."""
    if not request.user.is_authenticated:
        return LoginView.as_view(template_name="portal/front.html")(request)
    memberships = selectors.membership_list_for_user(user=request.user)
    last = request.session.get("last_org")
    chosen = memberships.filter(organization__slug=last).first() or memberships.first()
    if chosen is None:
        return redirect("organization_create")
    return redirect(_org_home(chosen.organization.slug))


@require_http_methods(["GET", "HEAD", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """The same answer for a free and a taken address: "check your email" (verification)."""
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            verification.signup(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
                full_name=form.cleaned_data["full_name"],
                organization_name=form.cleaned_data["organization_name"],
                base_url=base_url_of(request),
            )
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            # Lets the confirmation link log in this browser (it knows the password).
            request.session[SIGNUP_EMAIL_SESSION] = form.cleaned_data["email"]
            return redirect("signup_sent")
    return render(request, "registration/signup.html", {"form": form})


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def organization_create(request: HttpRequest) -> HttpResponse:
    if not request.user.email_verified_at:  # type: ignore[union-attr]
        return render(request, "portal/verify_pending.html", {"email": request.user.email})  # type: ignore[union-attr]
    form = OrganizationForm(request.POST or None, initial={"name": request.GET.get("name", "")})
    if request.method == "POST" and form.is_valid():
        try:
            org = services.organization_create(name=form.cleaned_data["name"], owner=request.user)  # type: ignore[arg-type]
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            messages.success(request, f"Created {org.name}.")
            return redirect(_org_home(org.slug))
    return render(request, "portal/organization_create.html", {"form": form})


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def account(request: HttpRequest) -> HttpResponse:
    form = AccountForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Your account was updated.")
        return redirect("account")
    context = {"form": form, "two_factor_enabled": twofactor.enabled(request.user)}  # type: ignore[arg-type]
    return render(request, "portal/account.html", context)


# --- Invitations (the link in the email) --------------------------------------------------------


@require_http_methods(["GET", "HEAD", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    invitation = invitations.invitation_find(token=token)
    problem = invitations.invitation_problem(invitation=invitation)
    if problem or invitation is None:
        status = 404 if invitation is None else 410
        return render(
            request, "portal/invitation_invalid.html", {"problem": problem}, status=status
        )

    context: dict[str, object] = {"invitation": invitation}
    user = request.user
    if user.is_authenticated:
        if user.email != invitation.email:
            context["problem"] = (
                f"This invitation was sent to {invitation.email}, but you are logged in as "
                f"{user.email}. Log out and open the link again."
            )
            return render(request, "portal/invitation_invalid.html", context, status=403)
        if request.method == "POST":
            try:
                invitations.invitation_accept(invitation=invitation, user=user)
            except ApplicationError as error:
                context["problem"] = error.message
                return render(request, "portal/invitation_invalid.html", context, status=410)
            messages.success(request, f"You joined {invitation.organization.name}.")
            return redirect(_org_home(invitation.organization.slug))
        return render(request, "portal/invitation_accept.html", context)

    if selectors.user_exists(email=invitation.email):
        context["login_url"] = f"{reverse('login')}?next={request.path}"
        return render(request, "portal/invitation_accept.html", context)

    form = InvitationSignupForm(request.POST or None, fixed_email=invitation.email)
    if request.method == "POST" and form.is_valid():
        try:
            new_user, _ = invitations.invitation_accept_with_signup(
                invitation=invitation,
                password=form.cleaned_data["password"],
                full_name=form.cleaned_data["full_name"],
            )
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            login(request, new_user, backend=AUTH_BACKEND)
            messages.success(request, f"Welcome! You joined {invitation.organization.name}.")
            return redirect(_org_home(invitation.organization.slug))
    context["form"] = form
    return render(request, "portal/invitation_accept.html", context)


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
            error_show(request, error, form=form)
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
        error_show(request, error)
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


# --- Two-factor sign-in -------------------------------------------------------------------------

OTP_PENDING_SESSION = "otp_pending"
OTP_PENDING_SECONDS = 300
OTP_ATTEMPTS = 5


def otp_pending_set(request: HttpRequest, user: User, next_url: str) -> None:
    """The password was right: remember who is signing in until they give their code."""
    request.session[OTP_PENDING_SESSION] = {
        "user": user.pk,
        "backend": getattr(user, "backend", AUTH_BACKEND),
        "next": next_url,
        "until": time.time() + OTP_PENDING_SECONDS,
        "failures": 0,
    }


def _otp_subject(request: HttpRequest) -> tuple[User | None, dict[str, Any]]:
    """Who gives a code here: the person half-way through logging in, or a logged-in person
    whose session has no second factor yet (an organization asks for one)."""
    if request.user.is_authenticated:
        return request.user, {"next": _safe_next(request)}
    pending = request.session.get(OTP_PENDING_SESSION)
    if not pending or pending.get("until", 0) < time.time():
        return None, {}
    return User.objects.filter(pk=pending["user"], is_active=True).first(), pending


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("home")


@require_http_methods(["GET", "HEAD", "POST"])
def login_otp(request: HttpRequest) -> HttpResponse:
    user, pending = _otp_subject(request)
    if user is None:
        messages.error(request, "Log in again: the sign-in took too long.")
        request.session.pop(OTP_PENDING_SESSION, None)
        return redirect("login")
    if request.user.is_authenticated and request.user.is_verified():  # type: ignore[attr-defined]
        return redirect(pending["next"])
    if not twofactor.enabled(user):
        return redirect(reverse("two_factor") + f"?next={pending['next']}")
    form = OtpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = twofactor.match(user=user, code=form.cleaned_data["code"])
        if device is not None:
            if not request.user.is_authenticated:
                request.session.pop(OTP_PENDING_SESSION, None)
                login(request, user, backend=pending["backend"])
            django_otp.login(request, device)
            return redirect(pending["next"])
        form.add_error("code", "That code is not right.")
        if not request.user.is_authenticated:
            pending["failures"] = pending.get("failures", 0) + 1
            if pending["failures"] >= OTP_ATTEMPTS:
                request.session.pop(OTP_PENDING_SESSION, None)
                messages.error(request, "Too many wrong codes. Log in again.")
                return redirect("login")
            request.session[OTP_PENDING_SESSION] = pending
    return render(request, "registration/login_otp.html", {"form": form, "next": pending["next"]})


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def two_factor(request: HttpRequest) -> HttpResponse:
    """Turn two-factor sign-in on (scan, type a code, keep the recovery codes) or off, and
    renew the recovery codes."""
    user: User = request.user  # type: ignore[assignment]
    action = request.POST.get("action", "")
    form = OtpForm(request.POST or None)
    codes: list[str] = []
    if request.method == "POST" and form.is_valid():
        code = form.cleaned_data["code"]
        try:
            if action == "confirm":
                codes = twofactor.setup_confirm(user=user, code=code)
                device = twofactor.match_confirmed_app(user=user)
                if device is not None:
                    django_otp.login(request, device)  # this session has shown a second factor
                messages.success(request, "Two-factor sign-in is on.")
            elif action == "renew":
                codes = twofactor.recovery_codes_renew(user=user, code=code)
                messages.success(request, "New recovery codes: the old ones no longer work.")
            elif action == "disable":
                twofactor.disable(user=user, code=code)
                messages.success(request, "Two-factor sign-in is off.")
                return redirect("two_factor")
        except ApplicationError as error:
            error_show(request, error, form=form)
    enabled = twofactor.enabled(user)
    context: dict[str, Any] = {
        "enabled": enabled,
        "form": form,
        "codes": codes,
        "next": _safe_next(request) if request.GET.get("next") else "",
        "requiring": twofactor.organizations_requiring(user),
    }
    if enabled:
        context["codes_left"] = twofactor.recovery_codes_left(user)
    else:
        device = twofactor.setup_device(user)
        context["qr"] = twofactor.qr_data_uri(device)
        context["secret"] = twofactor.secret_text(device)
    status = 400 if request.method == "POST" and form.errors else 200
    return render(request, "portal/two_factor.html", context, status=status)


# --- Staff impersonation ------------------------------------------------------------------------


@require_POST
def impersonation_stop(request: HttpRequest) -> HttpResponse:
    """The banner's "Stop" button: back to the staff member's own session."""
    if not request.session.get(impersonation.SESSION_KEY):
        return redirect("home")
    impersonation.stop(request, why="stopped")
    messages.success(request, "You are back in your own account.")
    return redirect("admin:index")
