"""URL map. Organization pages live under /o/<org_slug>/ and go through tenancy.org_view."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path

from agents import views as agent_views
from interfaces import views as interface_views
from interfaces.api import api, api_index, api_not_found
from organizations import account_views, views
from portal import health

org_patterns: list[URLPattern | URLResolver] = [
    path("", interface_views.org_home, name="org_home"),
    path("members/", views.members, name="members"),
    path("members/invite/", views.member_invite, name="member_invite"),
    path("members/<uuid:member_id>/role/", views.member_role, name="member_role"),
    path("members/<uuid:member_id>/remove/", views.member_remove, name="member_remove"),
    path(
        "invitations/<uuid:invitation_id>/resend/",
        views.invitation_resend,
        name="invitation_resend",
    ),
    path(
        "invitations/<uuid:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("settings/", views.org_settings, name="org_settings"),
    path("settings/delete/", views.org_delete, name="org_delete"),
    path("settings/two-factor/", views.org_two_factor, name="org_two_factor"),
    path("settings/connection/live/", views.connection_live, name="connection_live"),
    path("settings/connection/test/", views.connection_test, name="connection_test"),
    path("settings/api-keys/", views.api_key_create, name="api_key_create"),
    path("settings/api-keys/<uuid:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("agents/", include("agents.urls")),
    path("sessions/", include("sessions.urls")),
    path("activity/", include("activity.urls")),
]

urlpatterns = [
    # Also answered by portal.health.HealthCheckMiddleware, before host checks.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", account_views.home, name="home"),
    path("signup/", account_views.signup, name="signup"),
    path("signup/sent/", account_views.signup_sent, name="signup_sent"),
    path("signup/confirm/<str:token>/", account_views.signup_verify, name="signup_verify"),
    path("account/confirm-email/", account_views.verification_resend, name="verification_resend"),
    path("login/", account_views.LoginView.as_view(), name="login"),
    path("login/code/", account_views.login_otp, name="login_otp"),
    path("account/two-factor/", account_views.two_factor, name="two_factor"),
    path("impersonation/stop/", account_views.impersonation_stop, name="impersonation_stop"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", account_views.account, name="account"),
    path("account/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "account/password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("password-reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        account_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("orgs/new/", account_views.organization_create, name="organization_create"),
    path("invitations/<str:token>/", account_views.invitation_accept, name="invitation_accept"),
    path(
        "webhooks/bithuman/<str:receiver_token>/",
        agent_views.bithuman_webhook,
        name="bithuman_webhook",
    ),
    path("o/<slug:org_slug>/", include(org_patterns)),
    path("admin/", admin.site.urls),
    path("api/v1/", api_index, name="api_index"),
    path("api/v1/", api.urls),
    path("api/v1/<path:rest>", api_not_found),
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))

# Uploaded media is never served at MEDIA_URL, not even in DEBUG: only to members of the
# organization, through `agents.views.agent_media`.
