"""bitHuman avatar agents of an organization, their status history and prompt revisions.

An agent's status only moves forward: `ready` and `failed` absorb, and among the intermediate
values (whose names do not sort: `completed` shows up at ~5 %) progress decides what is newer.
`overdue` (ours: past the deadline) is kept by intermediate answers and left by ready or failed.
Writes that race (poller vs webhook) are compare-and-set updates in agents.statuses.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from portal.scoping import OrgScopedModel, OrgScopedQuerySet


class AgentStatus(models.TextChoices):
    SUBMITTING = "submitting", "Submitting"
    PROCESSING = "processing", "Processing"
    GENERATING = "generating", "Generating"
    COMPLETED = "completed", "Generating"  # intermediate upstream value, not an ending
    SUCCESS = "success", "Generating"  # intermediate upstream value, not an ending
    # Ours, never upstream's: still unfinished long past its model's typical time. Polled at the
    # slowest cadence; a later ready or failed still applies; "Give up" fails it for good.
    OVERDUE = "overdue", "Overdue"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


TERMINAL_STATUSES = frozenset({AgentStatus.READY, AgentStatus.FAILED})
IN_FLIGHT_STATUSES = frozenset(set(AgentStatus.values) - TERMINAL_STATUSES)


class AgentOrigin(models.TextChoices):
    PORTAL = "portal", "Created in the portal"
    IMPORTED = "imported", "Imported from bitHuman"


class AgentModel(models.TextChoices):
    EXPRESSION_1 = "expression-1", "Expression 1"
    ESSENCE_1 = "essence-1", "Essence 1"
    ESSENCE_2 = "essence-2", "Essence 2"
    EXPRESSION_2 = "expression-2", "Expression 2"
    # bitHuman classifies the face (or prompt) and routes: essence-2 for a photorealistic
    # person, expression-2 otherwise (api/agents.md); it bills the routed model's rate.
    AUTO = "auto", "Auto"


class AspectRatio(models.TextChoices):
    LANDSCAPE = "16:9", "16:9 landscape"
    PORTRAIT = "9:16", "9:16 portrait"
    SQUARE = "1:1", "1:1 square"


class Framing(models.TextChoices):
    PORTRAIT = "portrait", "Portrait (head and shoulders)"
    FULL_BODY = "full_body", "Full body"


class AgentQuerySet(OrgScopedQuerySet):
    def active(self) -> AgentQuerySet:
        return self.filter(archived_at__isnull=True)

    def in_flight(self) -> AgentQuerySet:
        return self.filter(status__in=IN_FLIGHT_STATUSES)

    def due_for_poll(self, now: datetime | None = None) -> AgentQuerySet:
        now = now or timezone.now()
        return (
            self.in_flight()
            .exclude(status=AgentStatus.SUBMITTING)
            .filter(next_poll_at__lte=now)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        )


def image_upload_to(instance: Agent, filename: str) -> str:
    return f"orgs/{instance.organization_id}/agents/{instance.public_id}/image/{filename}"


def audio_upload_to(instance: Agent, filename: str) -> str:
    return f"orgs/{instance.organization_id}/agents/{instance.public_id}/audio/{filename}"


class Agent(OrgScopedModel):
    name = models.CharField(max_length=100)
    system_prompt = models.TextField(blank=True)
    model = models.CharField(
        max_length=20, choices=AgentModel.choices, default=AgentModel.EXPRESSION_1
    )
    aspect_ratio = models.CharField(
        max_length=5, choices=AspectRatio.choices, default=AspectRatio.LANDSCAPE
    )
    framing = models.CharField(max_length=10, choices=Framing.choices, default=Framing.PORTRAIT)
    transparency = models.BooleanField(default=False)
    image = models.FileField(upload_to=image_upload_to, blank=True, max_length=300)
    image_url = models.URLField(blank=True, max_length=1000)
    audio = models.FileField(upload_to=audio_upload_to, blank=True, max_length=300)
    audio_url = models.URLField(blank=True, max_length=1000)
    # Where POST /v1/files/upload stored the face and voice (passed to generate as `image` and
    # `audio`); empty until uploaded (agents.media).
    image_file_url = models.URLField(blank=True, max_length=1000)
    audio_file_url = models.URLField(blank=True, max_length=1000)

    # bitHuman's identifier (agent id and code are the same string).
    code = models.CharField(max_length=20, blank=True, db_index=True)
    status = models.CharField(
        max_length=12, choices=AgentStatus.choices, default=AgentStatus.SUBMITTING, db_index=True
    )
    progress = models.FloatField(default=0.0)  # 0..1
    current_step = models.CharField(max_length=30, blank=True)
    progress_message = models.CharField(max_length=300, blank=True)
    error_message = models.TextField(blank=True)
    # bitHuman's X-Request-Id of the call that failed the agent (quote it to bitHuman support).
    error_request_id = models.CharField(max_length=128, blank=True)
    supported_models = models.JSONField(default=list, blank=True)
    # Models added to the ready agent (POST /v1/agent/{code}/models) that bitHuman is still
    # training: [{"model", "credits", "started_at"}] (agents.model_adds).
    models_adding = models.JSONField(default=list, blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Set by every write, including the compare-and-set updates (which bypass auto_now).
    updated_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    # The poller's bookkeeping.
    next_poll_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    consecutive_errors = models.PositiveIntegerField(default=0)
    # Attempts that did not end in a 429 (agents.queue: a 429 is waiting one's turn).
    submit_attempts = models.PositiveIntegerField(default=0)
    # Set when bitHuman's Generate rate limit answered 429: the submission waits until then
    # ("queued" on the pages).
    queued_until = models.DateTimeField(null=True, blank=True)

    # Import and sync (agents.imports, agents.sync). One bitHuman agent (its code) belongs to at
    # most one organization: the `agent_code_one_org` constraint.
    origin = models.CharField(
        max_length=10, choices=AgentOrigin.choices, default=AgentOrigin.PORTAL
    )
    imported_at = models.DateTimeField(null=True, blank=True)
    # The bitHuman account (its /v1/me user_id) the agent was last found in: the sync only
    # calls an agent deleted when the organization's current account is that account.
    bithuman_account = models.CharField(max_length=100, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    # Deleted at bitHuman (noticed by the sync): the row and its history stay, marked.
    upstream_deleted_at = models.DateTimeField(null=True, blank=True)
    # The generation attempt the row shows (agents.retries: a retry is a new attempt, same row).
    attempt = models.PositiveSmallIntegerField(default=1)

    objects = AgentQuerySet.as_manager()  # type: ignore[misc]

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            # The agent list (page and API): a page is the first rows of this index, and the
            # count reads the index alone, status filters too (status is its last column
            # rather than an INCLUDE, which SQLite lacks).
            models.Index(
                fields=["organization", "-created_at", "-id", "status"],
                condition=Q(archived_at__isnull=True),
                name="agent_active_list_idx",
            ),
            models.Index(fields=["status", "next_poll_at"]),
            # The dashboard's in-flight list: a few rows among 100,000 finished ones.
            models.Index(
                fields=["organization", "created_at"],
                condition=Q(status__in=sorted(IN_FLIGHT_STATUSES)),
                name="agent_in_flight_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["code"],
                condition=Q(archived_at__isnull=True) & ~Q(code=""),
                name="agent_code_one_org",
                violation_error_message="This bitHuman agent already belongs to an organization.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code or self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_ready(self) -> bool:
        return self.status == AgentStatus.READY

    @property
    def is_failed(self) -> bool:
        return self.status == AgentStatus.FAILED

    @property
    def is_overdue(self) -> bool:
        return self.status == AgentStatus.OVERDUE

    @property
    def is_deleted_upstream(self) -> bool:
        """Deleted at bitHuman (outside the portal), as the sync noticed."""
        return self.upstream_deleted_at is not None

    @property
    def is_queued(self) -> bool:
        """Waiting its turn under bitHuman's Generate rate limit (agents.queue)."""
        return self.status == AgentStatus.SUBMITTING and self.queued_until is not None


class StatusSource(models.TextChoices):
    SUBMIT = "submit", "Submit"
    POLL = "poll", "Poll"
    WEBHOOK = "webhook", "Webhook"
    MANUAL = "manual", "Manual"
    RETRY = "retry", "Retry"
    IMPORT = "import", "Import"
    SYNC = "sync", "bitHuman sync"


class AgentStatusChange(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12)
    progress = models.FloatField(default=0.0)
    current_step = models.CharField(max_length=30, blank=True)
    message = models.CharField(max_length=300, blank=True)
    request_id = models.CharField(max_length=128, blank=True)  # bitHuman's, of a failed call
    source = models.CharField(max_length=10, choices=StatusSource.choices)
    attempt = models.PositiveSmallIntegerField(default=1)  # the generation attempt it belongs to
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status} ({self.source})"


class PromptOrigin(models.TextChoices):
    PORTAL = "portal", "Portal"
    IMPORTED = "imported", "Imported from bitHuman"
    UPSTREAM = "bithuman", "Changed at bitHuman"


class PromptRevision(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="prompt_revisions")
    text = models.TextField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    accepted = models.BooleanField(default=False)
    error_message = models.TextField(blank=True)
    error_request_id = models.CharField(max_length=128, blank=True)  # bitHuman's X-Request-Id
    # Where the text came from: the portal, an import, or an edit made at bitHuman (the sync).
    origin = models.CharField(max_length=10, choices=PromptOrigin.choices, default="portal")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Revision of {self.agent_id} at {self.created_at:%Y-%m-%d %H:%M}"


class GenerationAttempt(models.Model):
    """One generation of an agent at bitHuman (agents.retries). A retry starts a new attempt in
    the same row; the row shows the newest (number == agent.attempt), and each finished one
    keeps its code and outcome here."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    code = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=12, blank=True)
    error_message = models.TextField(blank=True)
    error_request_id = models.CharField(max_length=128, blank=True)
    # What the person replaced before this attempt: "face", "voice", "prompt".
    changes = models.JSONField(default=list, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "number"], name="generation_attempt_unique")
        ]

    def __str__(self) -> str:
        return f"Attempt {self.number} of {self.agent_id}"


def pending_upload_to(instance: PendingUpload, filename: str) -> str:
    return f"orgs/{instance.organization_id}/pending/{instance.public_id}/{filename}"


class PendingUpload(OrgScopedModel):
    """A file chosen on the new-agent form whose submission failed validation: held for its
    user until the form succeeds (then deleted) or it expires (agents.uploads)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10)  # "image" or "audio"
    file = models.FileField(upload_to=pending_upload_to, max_length=300)
    original_name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.original_name} (kept until {self.expires_at:%H:%M})"
