"""Staff admin for agents: filters, search, status history, and two operator actions."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from agents import services
from agents.models import (
    Agent,
    AgentStatus,
    AgentStatusChange,
    PromptRevision,
    StatusSource,
)
from agents.statuses import agent_fail
from portal.admin import OrganizationFilter


class StatusFilter(admin.SimpleListFilter):
    """bitHuman's intermediate `completed` and `success` are still generating: one entry."""

    title = "status"
    parameter_name = "status"
    GROUPS = {
        "submitting": [AgentStatus.SUBMITTING],
        "processing": [AgentStatus.PROCESSING],
        "generating": [AgentStatus.GENERATING, AgentStatus.COMPLETED, AgentStatus.SUCCESS],
        "overdue": [AgentStatus.OVERDUE],
        "ready": [AgentStatus.READY],
        "failed": [AgentStatus.FAILED],
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("submitting", "Submitting"),
            ("processing", "Processing"),
            ("generating", "Generating"),
            ("overdue", "Overdue"),
            ("ready", "Ready"),
            ("failed", "Failed"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        statuses = self.GROUPS.get(self.value() or "")
        return queryset.filter(status__in=statuses) if statuses else queryset


# Chosen at creation and sent to bitHuman: fixed once the agent is submitted.
_GENERATION_INPUTS = [
    "organization",
    "model",
    "system_prompt",
    "aspect_ratio",
    "framing",
    "transparency",
    "image",
    "image_url",
    "audio",
    "audio_url",
    "supported_models",
    "created_by",
    "updated_at",
]


class AgentStatusChangeInline(admin.TabularInline):
    model = AgentStatusChange
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "created_at",
        "attempt",
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
    fields = readonly_fields = (
        "created_at",
        "author",
        "origin",
        "accepted",
        "text",
        "error_message",
    )

    def has_add_permission(self, request: HttpRequest, obj: Agent | None = None) -> bool:
        return False


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "code", "model", "status", "progress", "created_at"]
    list_filter = [StatusFilter, "model", OrganizationFilter, "created_at"]
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
        # Import, sync and retries (agents.imports, agents.sync, agents.retries): theirs alone.
        "origin",
        "imported_at",
        "bithuman_account",
        "synced_at",
        "upstream_deleted_at",
        "attempt",
    ]
    inlines = [AgentStatusChangeInline, PromptRevisionInline]
    actions = ["refresh_status_now", "mark_failed"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        # An agent never moves between organizations; its inputs are bitHuman's once sent.
        if obj is None:
            return fields
        if obj.code or obj.submitted_at or obj.status != AgentStatus.SUBMITTING:
            return fields + [f for f in _GENERATION_INPUTS if f not in fields]
        return [*fields, "organization", "created_by", "updated_at"]

    @admin.action(description="Refresh status now")
    def refresh_status_now(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        count, finished, unsubmitted = 0, 0, 0
        for agent in queryset:
            if agent.is_terminal:
                finished += 1
            elif not agent.code:
                unsubmitted += 1
            else:
                services.agent_refresh_now(agent=agent)
                count += 1
        reasons = []
        if finished:
            reasons.append(f"{finished} already ready or failed (their status no longer changes)")
        if unsubmitted:
            reasons.append(
                f"{unsubmitted} not accepted by bitHuman yet (no code to ask about; the submit "
                "sweeper retries them)"
            )
        text = f"Queued a status refresh for {count} agent(s)."
        if reasons:
            text += " Skipped " + "; ".join(reasons) + "."
        self.message_user(request, text, messages.SUCCESS if count else messages.WARNING)

    @admin.action(description="Mark failed")
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        changed = sum(
            agent_fail(
                agent=agent, reason="Marked failed by platform staff.", source=StatusSource.MANUAL
            )
            for agent in queryset
        )
        skipped = queryset.count() - changed
        text = f"Marked {changed} agent(s) failed."
        if skipped:
            text += f" Skipped {skipped} already ready or failed (only generating agents can fail)."
        self.message_user(request, text, messages.SUCCESS if changed else messages.WARNING)
