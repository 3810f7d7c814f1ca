"""Staff admin for users, memberships and invitations. Tokens are never shown.

Organizations themselves are in interfaces/admin.py: suspending one also ends its live sessions,
which this layer cannot reach."""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from organizations import impersonation, twofactor
from portal.admin import OrganizationFilter
from portal.errors import ApplicationError
from portal.models import Invitation, Membership, User


class ImpersonationForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        min_length=10,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why you need to see the portal as this person (a ticket number helps). "
        "It is written in the audit log of each of their organizations, with every change "
        "you make.",
    )


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["user", "organization", "role", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["user", "organization"]


class PortalUserChangeForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User
        fields = "__all__"


class PortalUserCreationForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("email",)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = PortalUserChangeForm
    add_form = PortalUserCreationForm
    ordering = ["email"]
    list_display = ["email", "full_name", "is_active", "is_staff", "date_joined", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser", "date_joined"]
    search_fields = ["email", "full_name"]
    readonly_fields = ["date_joined", "last_login", "email_verified_at", "impersonate"]
    fieldsets = (
        (None, {"fields": ("email", "password", "impersonate")}),
        ("Profile", {"fields": ("full_name",)}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Dates", {"fields": ("last_login", "date_joined", "email_verified_at")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    inlines = [MembershipInline]
    actions = ["two_factor_turn_off"]

    @admin.action(description="Turn off two-factor sign-in (lost phone and recovery codes)")
    def two_factor_turn_off(self, request: HttpRequest, queryset: Any) -> None:
        from activity import services as activity_services

        for user in queryset:
            if not twofactor.enabled(user):
                continue
            twofactor.reset(user=user)
            for membership in Membership.objects.filter(user=user).select_related("organization"):
                activity_services.audit_record(
                    org=membership.organization,
                    actor=request.user,  # type: ignore[arg-type]
                    staff=True,
                    action="staff.changed",
                    target=membership,
                    details={"two_factor": "turned off by staff"},
                )
        self.message_user(request, "Two-factor sign-in is off for the selected users.")

    @admin.display(description="Impersonate")
    def impersonate(self, obj: User) -> str:
        if not obj.pk or obj.is_staff or obj.is_superuser:
            return "—"
        url = reverse("admin:portal_user_impersonate", args=[obj.pk])
        return format_html('<a class="button" href="{}">See the portal as this user</a>', url)

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<path:object_id>/impersonate/",
                self.admin_site.admin_view(self.impersonate_view),
                name="portal_user_impersonate",
            )
        ]
        return own + super().get_urls()

    def impersonate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Start an impersonation (organizations.impersonation), with a written reason."""
        target = get_object_or_404(User, pk=object_id if object_id.isdigit() else 0)
        problem = impersonation.can_impersonate(request.user, target)  # type: ignore[arg-type]
        form = ImpersonationForm(request.POST or None)
        if request.method == "POST" and form.is_valid() and problem is None:
            try:
                impersonation.start(request, target=target, reason=form.cleaned_data["reason"])
            except ApplicationError as error:
                form.add_error("reason" if error.field == "reason" else None, error.message)
            else:
                return redirect("home")
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": f"Impersonate {target.email}",
            "target": target,
            "form": form,
            "problem": problem,
            "minutes": impersonation.settings.IMPERSONATION_MINUTES,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/portal/user/impersonate.html", context)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = [OrganizationFilter, "role", "created_at"]
    search_fields = ["user__email", "organization__name", "organization__slug"]
    autocomplete_fields = ["user", "organization"]
    readonly_fields = ["public_id", "created_at"]
    list_select_related = ["user", "organization"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "organization", "role", "state", "invited_by", "expires_at"]
    list_filter = [
        OrganizationFilter,
        "role",
        "created_at",
        "expires_at",
        "accepted_at",
        "revoked_at",
    ]
    search_fields = ["email", "organization__name", "organization__slug"]
    list_select_related = ["organization", "invited_by"]
    # token_hash is excluded: staff never see (or copy) anything that leads to the link.
    fields = [
        "organization",
        "email",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "revoked_at",
    ]
    readonly_fields = ["created_at", "accepted_at", "accepted_by", "invited_by"]
    autocomplete_fields = ["organization"]

    def has_add_permission(self, request) -> bool:
        # Invitations are created from the members page, which emails the one-time link.
        return False


# django-otp's own admin pages would show staff every person's TOTP secret (as a QR code) and
# recovery codes: not registered. A person who lost both resets with a staff member's help from
# their user page ("Turn off two-factor sign-in").
admin.site.unregister(TOTPDevice)
admin.site.unregister(StaticDevice)
