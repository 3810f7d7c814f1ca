"""Staff can inspect sandbox state and turn an account's knobs."""

from django.contrib import admin

from sandbox.models import SandboxAccount, SandboxAgent, SandboxRoom, SandboxWebhook


@admin.register(SandboxAccount)
class SandboxAccountAdmin(admin.ModelAdmin):
    list_display = ("secret_prefix", "label", "plan", "credits", "suspended", "created_at")
    list_filter = ("plan", "suspended")
    search_fields = ("label", "secret_prefix", "public_id")
    readonly_fields = ("public_id", "secret_prefix", "created_at")
    fields = (
        "public_id",
        "label",
        "secret_prefix",
        "plan",
        "credits",
        "suspended",
        "latency_ms",
        "error_rate",
        "force_429_rate",
        "time_scale",
        "clock_offset_seconds",
        "created_at",
    )


@admin.register(SandboxAgent)
class SandboxAgentAdmin(admin.ModelAdmin):
    list_display = ("code", "account", "model", "status", "scenario", "created_at")
    list_filter = ("status", "model", "scenario")
    search_fields = ("code", "name")
    raw_id_fields = ("account",)


@admin.register(SandboxRoom)
class SandboxRoomAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "agent", "expires_at", "ended_at")
    raw_id_fields = ("account", "agent")


@admin.register(SandboxWebhook)
class SandboxWebhookAdmin(admin.ModelAdmin):
    list_display = ("url", "account", "active", "created_at")
    raw_id_fields = ("account",)
    exclude = ("secret",)
