"""The sandbox's own state: accounts, agents, rooms, rate buckets, idempotency keys, webhooks.

Everything lives in the database so several processes (web, worker, benchmarks) and restarts
see one sandbox. Business rules live in services.py.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class SandboxAccount(models.Model):
    """A sandbox API secret with its plan, credits and fault-injection knobs.

    A knob left empty (NULL) falls back to the matching SANDBOX_* setting.
    """

    class Plan(models.TextChoices):
        FREE = "free", "Free"
        CREATOR = "creator", "Creator"
        PRO = "pro", "Pro"
        BUSINESS = "business", "Business"
        ENTERPRISE = "enterprise", "Enterprise"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    label = models.CharField(max_length=200, blank=True, help_text="Who uses it, e.g. an org.")
    secret_prefix = models.CharField(max_length=12, help_text="The visible start of the secret.")
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    plan = models.CharField(max_length=20, choices=Plan.choices, default="pro")
    credits = models.IntegerField(default=0)
    suspended = models.BooleanField(default=False, help_text="Answer 401 ACCOUNT_SUSPENDED.")
    latency_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Delay added to each API answer (ms)."
    )
    error_rate = models.FloatField(
        null=True, blank=True, help_text="Share of API requests answered 503 (0..1)."
    )
    force_429_rate = models.FloatField(
        null=True, blank=True, help_text="Share of API requests answered 429 (0..1)."
    )
    session_limit = models.BooleanField(
        default=False,
        help_text="Answer 429 SESSION_LIMIT when a session starts (embed tokens): capacity in use.",
    )
    # POST /v2/{user_id}/runtime/revoke-all (api/runtime-sessions.md): runtime token issuance
    # is suspended until a new API key is created (the control API's `runtime_suspended`).
    runtime_suspended = models.BooleanField(
        default=False, help_text="Runtime keys revoked (revoke-all): runtime tokens refused."
    )
    time_scale = models.FloatField(
        null=True, blank=True, help_text="Generation speed-up; 0 freezes the clock."
    )
    clock_offset_seconds = models.FloatField(
        default=0.0, help_text="Simulated seconds added to this account's clock (test clock)."
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.secret_prefix}… ({self.plan}{', ' + self.label if self.label else ''})"

    @property
    def email(self) -> str:
        return f"sandbox-{self.public_id.hex[:12]}@sandbox.bithuman.invalid"


class SandboxAgent(models.Model):
    class Scenario(models.TextChoices):
        NONE = "", "None"
        FAIL_EARLY = "fail_early", "Fail early (media download)"
        FAIL_LATE = "fail_late", "Fail late (lip sync)"

    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE, related_name="agents")
    code = models.CharField(max_length=10, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    system_prompt = models.TextField(blank=True)
    model = models.CharField(max_length=20, help_text="The resolved engine, e.g. expression-1.")
    image_url = models.TextField(blank=True, help_text="The input image, when it was a URL.")
    # The input image when it was uploaded as base64 (JPEG, PNG or WebP): the agent's own face,
    # shown by the hosted room and served at embed/<code>/face.
    image_data = models.BinaryField(blank=True, default=b"", editable=False)
    image_type = models.CharField(max_length=20, blank=True)
    audio_url = models.TextField(blank=True)
    aspect_ratio = models.CharField(max_length=8, default="16:9")
    framing = models.CharField(max_length=12, default="portrait")
    transparency = models.BooleanField(default=False)
    scenario = models.CharField(max_length=12, choices=Scenario.choices, blank=True)
    failure_message = models.TextField(blank=True)
    cost = models.PositiveIntegerField(default=0)
    refunded = models.BooleanField(default=False)
    # The simulated clock: frozen at submit so later setting changes never move an agent back.
    duration_seconds = models.FloatField(help_text="Simulated seconds until ready.")
    time_scale = models.FloatField()
    clock_offset_at_submit = models.FloatField(default=0.0)
    # The last persisted state (the live one is derived from the clock when read).
    phase = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=12, default="processing")
    current_step = models.CharField(max_length=24, default="payment")
    progress = models.FloatField(default=0.0)
    progress_msg = models.CharField(max_length=200, blank=True)
    event_type = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["account", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.code} ({self.model}, {self.status})"


class SandboxRateBucket(models.Model):
    """One token bucket (generate, write, read) of one account; locked with select_for_update."""

    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE)
    bucket = models.CharField(max_length=12)
    tokens = models.FloatField()
    refilled_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "bucket"], name="sandbox_bucket_unique")
        ]

    def __str__(self) -> str:
        return f"{self.bucket}: {self.tokens:.1f}"


class SandboxIdempotencyKey(models.Model):
    """The first answer to a generate with this key, replayed verbatim for 24 hours."""

    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    status_code = models.PositiveSmallIntegerField()
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "key"], name="sandbox_idempotency_unique")
        ]

    def __str__(self) -> str:
        return self.key


class SandboxRoom(models.Model):
    """A live room of an agent: an open embed page (heartbeats) or a runtime-token session."""

    class Kind(models.TextChoices):
        EMBED = "embed", "Embed page"
        RUNTIME = "runtime", "Runtime token (LiveKit)"

    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE)
    agent = models.ForeignKey(SandboxAgent, on_delete=models.CASCADE, related_name="rooms")
    # The runtime session's id (GET /v2/{user_id}/runtime-sessions lists rooms as sessions).
    session_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # False: the avatar worker never joined, so speak/add-context skip it
    # (`rooms_skipped_no_worker`); set through the control API.
    has_worker = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    # Set by POST .../runtime-sessions/{id}/terminate: the reason it received.
    terminated_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "name"], name="sandbox_room_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class SandboxRoomMessage(models.Model):
    """What speak / add-context delivered to a room; the embed page polls these. Spoken lines
    are the avatar's (`assistant`) lines of the session's transcript."""

    class Kind(models.TextChoices):
        SPEAK = "speak", "Speak"
        ADD_CONTEXT = "add_context", "Context"
        # A visitor talking in the hosted room (the page's text box stands in for the
        # microphone) and the avatar's answer: the transcript's `user` and `assistant` lines.
        VISITOR = "visitor", "Visitor"
        ANSWER = "answer", "Avatar answer"

    room = models.ForeignKey(SandboxRoom, on_delete=models.CASCADE, related_name="messages")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.kind}: {self.text[:40]}"


class SandboxWebhook(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE, related_name="webhooks")
    url = models.TextField()
    events = models.JSONField(default=list, help_text="Empty means every event.")
    description = models.TextField(blank=True)
    secret = models.CharField(max_length=80)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.url


class SandboxWebhookDelivery(models.Model):
    """One event for one endpoint, and how its attempts went. The body is fixed at creation."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    webhook = models.ForeignKey(SandboxWebhook, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=40)
    event_type = models.CharField(max_length=40)
    body = models.TextField()
    attempts = models.PositiveSmallIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    delivered = models.BooleanField(default=False)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class SandboxLiveKitRoom(models.Model):
    """A room of the account's stand-in LiveKit project (RoomService.CreateRoom), until
    RoomService.DeleteRoom. The avatar's bitHuman runtime session is a `SandboxRoom` of the same
    name, registered when the stand-in worker takes a dispatch."""

    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE)
    sid = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    metadata = models.TextField(blank=True)
    empty_timeout = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["account", "name"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.sid})"


class SandboxLiveKitDispatch(models.Model):
    """An explicit agent dispatch (AgentDispatchService.CreateDispatch) and what the stand-in
    worker made of it: `joined`, or `failed` with why (e.g. an agent that is not ready)."""

    room = models.ForeignKey(
        SandboxLiveKitRoom, on_delete=models.CASCADE, related_name="dispatches"
    )
    dispatch_id = models.CharField(max_length=40, unique=True)
    agent_name = models.CharField(max_length=200)
    metadata = models.TextField(blank=True)
    state = models.CharField(max_length=10, default="pending")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.agent_name} → {self.room.name} ({self.state})"


class SandboxFile(models.Model):
    """A file sent to POST /v1/files/upload, served publicly by its URL (bitHuman's CDN)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=255, help_text="Stored name: timestamp and original name.")
    original_source = models.TextField(help_text="The URL it was downloaded from, or its name.")
    file_type = models.CharField(max_length=10)
    asset_category = models.CharField(max_length=10)
    mime_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    data = models.BinaryField(help_text="The bytes (empty for a simulated URL download).")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class SandboxModelAdd(models.Model):
    """POST /v1/agent/{code}/models: a model added to a ready agent, launchable once the agent's
    simulated clock passes `ready_at_seconds` (0 for an instant add)."""

    agent = models.ForeignKey(SandboxAgent, on_delete=models.CASCADE, related_name="model_adds")
    model = models.CharField(max_length=20)
    credits = models.PositiveIntegerField(default=0)
    ready_at_seconds = models.FloatField(help_text="Simulated seconds since the agent's submit.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "model"], name="sandbox_model_add_unique")
        ]

    def __str__(self) -> str:
        return f"{self.agent_id}: {self.model}"


class SandboxApiSecret(models.Model):
    """A further API secret of an account (api/api-keys.md: `POST /v2/{user_id}/api-secrets`).

    Every secret of one account is that account: the same agents, credits and rate buckets
    (api/rate-limits.md). The account's first secret (the one that opened it) is not a row here.
    The sandbox keeps the value so `get-value` can reveal it, as bitHuman's API does.
    """

    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE, related_name="secrets")
    alias = models.CharField(max_length=32)
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    value = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    # Deleted keys stay as a denylist: the secret never authenticates (nor opens an account) again.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "alias"],
                condition=models.Q(deleted_at__isnull=True),
                name="sandbox_secret_alias",
            )
        ]

    def __str__(self) -> str:
        return f"{self.alias} ({self.value[:8]}…)"
