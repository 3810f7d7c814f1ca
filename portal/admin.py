"""Staff admin for users, organizations, memberships and invitations. Tokens are never shown.

Also the admin site's branding and `OrganizationFilter` (organizations told apart by slug),
used by every admin with an organization column."""

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal import impersonation, services, twofactor
from portal.errors import ApplicationError
from portal.models import Invitation, Membership, Organization, User

admin.site.site_header = "bitHuman Portal · staff admin"
admin.site.site_title = "bitHuman Portal staff admin"
admin.site.index_title = "Platform administration"


class OrganizationFilter(admin.SimpleListFilter):
    """Organizations by name *and* slug: several can share a name."""

    title = "organization"
    parameter_name = "organization__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (str(pk), f"{name} ({slug})")
            for pk, name, slug in Organization.objects.order_by("name", "slug").values_list(
                "pk", "name", "slug"
            )
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(organization_id=int(value))
        return queryset


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
        """Start an impersonation (portal.impersonation), with a written reason."""
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


class SuspendForm(forms.Form):
    reason = forms.CharField(
        max_length=300,
        help_text="Shown to the organization's members on every page.",
        widget=forms.TextInput(attrs={"size": 80}),
    )


class SuspendedFilter(admin.SimpleListFilter):
    title = "suspension"
    parameter_name = "suspended"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Suspended"), ("no", "Active")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(suspended_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(suspended_at__isnull=True)
        return queryset


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "member_count", "suspended_at", "created_at"]
    search_fields = ["name", "slug"]
    list_filter = [SuspendedFilter, "created_at"]
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ["created_at", "suspended_at", "suspended_reason"]
    inlines = [MembershipInline]
    actions = ["suspend", "unsuspend"]

    @admin.display(description="Members")
    def member_count(self, obj: Organization) -> int:
        return obj.membership_set.count()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The slug is in every link and API answer: fixed once the organization exists.
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "slug"] if obj else fields

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return {} if obj else super().get_prepopulated_fields(request, obj)

    @admin.action(description="Suspend organization")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Organization]) -> Any:
        """Asks for the reason (members see it), then suspends and ends live sessions."""
        form = SuspendForm(request.POST if "reason" in request.POST else None)
        if not form.is_valid():
            return TemplateResponse(
                request,
                "admin/portal/suspend.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Suspend organizations",
                    "organizations": queryset,
                    "form": form,
                    "opts": self.model._meta,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )
        from sessions import services as session_services
        from sessions.models import AgentSession

        suspended, ended = [], 0
        for org in queryset:
            try:
                changed = services.organization_suspend(
                    org=org, staff_user=cast(User, request.user), reason=form.cleaned_data["reason"]
                )
            except ApplicationError as error:
                self.message_user(request, error.message, messages.ERROR)
                return None
            if changed:
                suspended.append(org.slug)
            for session in AgentSession.objects.for_org(org).live():
                ended += session_services.session_end_by_staff(
                    session=session, user=cast(User, request.user)
                )
        skipped = queryset.count() - len(suspended)
        text = f"Suspended {len(suspended)} organization(s)"
        text += f" ({', '.join(suspended)}); ended {ended} live session(s)." if suspended else "."
        if skipped:
            text += f" {skipped} already suspended: nothing to do."
        self.message_user(request, text, messages.SUCCESS if suspended else messages.WARNING)
        return None

    @admin.action(description="Lift suspension")
    def unsuspend(self, request: HttpRequest, queryset: QuerySet[Organization]) -> None:
        lifted = [
            org.slug
            for org in queryset
            if services.organization_unsuspend(org=org, staff_user=cast(User, request.user))
        ]
        skipped = queryset.count() - len(lifted)
        text = f"Lifted the suspension of {len(lifted)} organization(s)."
        if skipped:
            text += f" {skipped} were not suspended: nothing to do."
        self.message_user(request, text, messages.SUCCESS if lifted else messages.WARNING)


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
