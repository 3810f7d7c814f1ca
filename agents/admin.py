"""Staff admin for agents: filters, search, status history, and two operator actions."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from agents import services
from agents.models import Agent, AgentStatusChange, PromptRevision, StatusSource


class AgentStatusChangeInline(admin.TabularInline):
    model = AgentStatusChange
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "created_at",
        "from_status",
        "to_status",
        "progress",
        "current_step",
        "source",
        "message",
    )

    def has_add_permission(self, request: HttpRequest, obj: Agent | None = None) -> bool:
        return False


class PromptRevisionInline(admin.TabularInline):
    model = PromptRevision
    extra = 0
    can_delete = False
    fields = readonly_fields = ("created_at", "author", "accepted", "text", "error_message")

    def has_add_permission(self, request: HttpRequest, obj: Agent | None = None) -> bool:
        return False


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "code", "model", "status", "progress", "created_at"]
    list_filter = ["status", "model", "organization", "created_at"]
    search_fields = ["name", "code", "organization__name", "organization__slug"]
    list_select_related = ["organization"]
    readonly_fields = [
        "public_id",
        "code",
        "status",
        "progress",
        "current_step",
        "progress_message",
        "error_message",
        "submitted_at",
        "ready_at",
        "failed_at",
        "archived_at",
        "next_poll_at",
        "lease_until",
        "consecutive_errors",
        "submit_attempts",
        "created_at",
    ]
    inlines = [AgentStatusChangeInline, PromptRevisionInline]
    actions = ["refresh_status_now", "mark_failed"]

    @admin.action(description="Refresh status now")
    def refresh_status_now(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        count = 0
        for agent in queryset.filter(code__gt=""):
            if not agent.is_terminal:
                services.agent_refresh_now(agent=agent)
                count += 1
        self.message_user(request, f"Queued a status refresh for {count} agent(s).")

    @admin.action(description="Mark failed")
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        changed = sum(
            services.agent_fail(
                agent=agent, reason="Marked failed by platform staff.", source=StatusSource.MANUAL
            )
            for agent in queryset
        )
        self.message_user(request, f"Marked {changed} agent(s) failed.", messages.SUCCESS)
