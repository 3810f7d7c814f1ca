"""Staff admin for sessions: filters, and each session's timeline inline and read-only.

Room links carry bearer tokens and LiveKit secrets are encrypted: neither is ever shown here.
"""

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from portal.admin import OrganizationFilter
from sessions import services
from sessions.models import AgentSession, LiveKitConfig, QuickReply, SessionEvent


class SessionEventInline(admin.TabularInline):
    model = SessionEvent
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "created_at",
        "kind",
        "author",
        "text",
        "outcome",
        "delivered_rooms",
        "error_code",
        "error_message",
    )

    def has_add_permission(self, request: HttpRequest, obj: AgentSession | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AgentSession | None = None) -> bool:
        return False


@admin.register(AgentSession)
class AgentSessionAdmin(admin.ModelAdmin):
    list_display = [
        "public_id",
        "organization",
        "agent",
        "kind",
        "status",
        "started_by",
        "started_at",
        "ended_at",
        "message_count",
    ]
    list_filter = [OrganizationFilter, "status", "kind", "started_at"]
    search_fields = ["agent__name", "agent__code", "room_name", "organization__slug"]
    list_select_related = ["organization", "agent", "started_by"]
    fields = readonly_fields = (
        "public_id",
        "organization",
        "agent",
        "kind",
        "status",
        "room_name",
        "room_host",
        "sandbox",
        "livekit_url",
        "started_by",
        "started_at",
        "last_activity_at",
        "ended_by",
        "ended_at",
        "end_reason",
    )
    inlines = [SessionEventInline]
    actions = ["end_session"]

    @admin.action(description="End session")
    def end_session(self, request: HttpRequest, queryset: QuerySet[AgentSession]) -> None:
        ended = sum(
            services.session_end_by_staff(session=session, user=request.user)  # type: ignore[arg-type]
            for session in queryset.select_related("organization", "agent")
        )
        skipped = queryset.count() - ended
        text = f"Ended {ended} session(s)."
        if skipped:
            text += f" Skipped {skipped} already ended."
        self.message_user(request, text, messages.SUCCESS if ended else messages.WARNING)

    def get_queryset(self, request: HttpRequest) -> QuerySet[AgentSession]:
        return super().get_queryset(request).annotate(message_total=Count("events"))

    @admin.display(description="events", ordering="message_total")
    def message_count(self, obj: AgentSession) -> int:
        return int(getattr(obj, "message_total", 0))

    @admin.display(description="room link host")
    def room_host(self, obj: AgentSession) -> str:
        return obj.room_host

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AgentSession | None = None) -> bool:
        return False


@admin.register(QuickReply)
class QuickReplyAdmin(admin.ModelAdmin):
    list_display = ["text", "organization", "created_by", "created_at"]
    list_filter = [OrganizationFilter]
    search_fields = ["text"]
    readonly_fields = ["public_id", "created_at"]


@admin.register(LiveKitConfig)
class LiveKitConfigAdmin(admin.ModelAdmin):
    list_display = ["organization", "url", "api_key", "agent_name", "updated_at"]
    fields = readonly_fields = (
        "organization",
        "url",
        "agent_name",
        "api_key",
        "api_secret_masked",
        "updated_at",
        "updated_by",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
