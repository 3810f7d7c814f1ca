"""Staff admin for organizations. It sits with the interfaces because suspending an organization
also ends its live sessions (the sessions layer), above the organizations layer."""

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from organizations import services
from organizations.admin import MembershipInline
from portal.errors import ApplicationError
from portal.models import Organization, User
from sessions import services as session_services
from sessions.models import AgentSession


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
