"""Live sessions of agents, their timeline, saved quick replies and the LiveKit project.

A session is one room an operator opened for a ready agent: bitHuman's hosted embed page
(`hosted`) or a room of the organization's own LiveKit project (`livekit`). Its status only moves
from `live` to `ended` (compare-and-set in services). Every speak / add-context attempt is a
`SessionEvent` with its outcome, delivered or not; system events record starts, ends and errors.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.utils import timezone

from portal.crypto import EncryptedTextField, mask
from portal.scoping import OrgScopedModel, OrgScopedQuerySet

# Input limits of the console (and of any other caller of the services).
SPEAK_MAX_CHARS = 2000
CONTEXT_MAX_CHARS = 10_000
QUICK_REPLY_MAX_CHARS = 500
# What examples/livekit_worker registers as unless LIVEKIT_AGENT_NAME says otherwise.
DEFAULT_LIVEKIT_AGENT_NAME = "bithuman-avatar"


class SessionKind(models.TextChoices):
    HOSTED = "hosted", "Hosted (bitHuman embed page)"
    LIVEKIT = "livekit", "LiveKit room"


class SessionStatus(models.TextChoices):
    LIVE = "live", "Live"
    ENDED = "ended", "Ended"


class EndReason(models.TextChoices):
    OPERATOR = "operator", "Ended by an operator"
    IDLE = "idle", "Idle for too long"
    STAFF = "staff", "Ended by platform staff"


class AgentSessionQuerySet(OrgScopedQuerySet):
    def live(self) -> AgentSessionQuerySet:
        return self.filter(status=SessionStatus.LIVE)

    def idle_since(self, cutoff: datetime) -> AgentSessionQuerySet:
        return self.live().filter(last_activity_at__lt=cutoff)


class AgentSession(OrgScopedModel):
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="sessions")
    kind = models.CharField(max_length=10, choices=SessionKind.choices)
    room_name = models.CharField(max_length=200, blank=True)
    # The link that opens the room. It carries a bearer token (bitHuman embed JWT or a LiveKit
    # participant token), so it is encrypted at rest and never shown in the admin.
    room_url = EncryptedTextField()
    status = models.CharField(
        max_length=10, choices=SessionStatus.choices, default=SessionStatus.LIVE, db_index=True
    )
    # Where the room was made, so ending it reaches the same place even if settings change:
    # the sandbox (Test mode) or bitHuman (Live mode), and the LiveKit server, if any.
    sandbox = models.BooleanField(default=False, help_text="Started in Test mode (the sandbox).")
    livekit_url = models.CharField(max_length=300, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    end_reason = models.CharField(max_length=10, choices=EndReason.choices, blank=True)
    # The last start, speak or add-context attempt; the idle sweep ends sessions past
    # SESSION_IDLE_MINUTES of it.
    last_activity_at = models.DateTimeField(default=timezone.now)
    # bitHuman's runtime session for this room (api/runtime-sessions.md), linked as soon as
    # bitHuman lists it: its id (to terminate it, read its transcript) and its room name (the
    # `room_id` speak and add-context target). Empty until then.
    upstream_session_id = models.CharField(max_length=100, blank=True, db_index=True)
    upstream_room_name = models.CharField(max_length=200, blank=True)
    upstream_linked_at = models.DateTimeField(null=True, blank=True)
    # Ending it upstream (terminate): when bitHuman confirmed, its answer, or the last failure
    # while the retries go on.
    upstream_ended_at = models.DateTimeField(null=True, blank=True)
    upstream_end_note = models.TextField(blank=True)
    upstream_end_error = models.TextField(blank=True)
    upstream_end_attempts = models.PositiveSmallIntegerField(default=0)
    # The runtime session's transcript (visitor and avatar lines, sessions.transcripts): when it
    # was last pulled, and when the pull after the end got it whole (no more pulls then).
    transcript_pulled_at = models.DateTimeField(null=True, blank=True)
    transcript_final_at = models.DateTimeField(null=True, blank=True)

    objects = AgentSessionQuerySet.as_manager()  # type: ignore[misc]

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-started_at"]),
            models.Index(fields=["status", "last_activity_at"]),
        ]
        verbose_name = "agent session"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} session of agent {self.agent_id} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status == SessionStatus.LIVE

    @property
    def duration(self) -> timedelta:
        return (self.ended_at or timezone.now()) - self.started_at

    @property
    def is_linked(self) -> bool:
        """Whether bitHuman listed this session's room (so messages can target it)."""
        return bool(self.upstream_session_id)

    @property
    def upstream_end_pending(self) -> bool:
        """Ended here, not yet confirmed ended by bitHuman (a terminate is being retried)."""
        return not self.is_live and self.is_linked and self.upstream_ended_at is None

    @property
    def room_host(self) -> str:
        """Where the room link points (safe to show: no token)."""
        return urlsplit(self.room_url).netloc


class EventKind(models.TextChoices):
    SPEAK = "speak", "Speak"
    CONTEXT = "context", "Context"
    SYSTEM = "system", "System"
    # Lines of bitHuman's transcript of the room: what a visitor said (`user`) and what the
    # avatar said (`assistant`), at bitHuman's timestamps.
    VISITOR = "visitor", "Visitor"
    AVATAR = "avatar", "Avatar"


class EventOutcome(models.TextChoices):
    DELIVERED = "delivered", "Delivered"
    # bitHuman answered 200 but `delivered_to_rooms` was 0 or `rooms_skipped_no_worker` > 0:
    # per api/agents.md the message reached no one.
    REACHED_NO_ONE = "reached_no_one", "Reached no one"
    NO_LIVE_ROOM = "no_live_room", "No live room"
    ERROR = "error", "Error"


RATE_LIMITED = "RATE_LIMITED"


class SessionEvent(models.Model):
    """One thing that happened in a session. Speak and context events always have an outcome;
    system events have one only when something failed."""

    session = models.ForeignKey(AgentSession, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=10, choices=EventKind.choices)
    text = models.TextField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    outcome = models.CharField(max_length=15, choices=EventOutcome.choices, blank=True)
    delivered_rooms = models.PositiveIntegerField(null=True, blank=True)
    # rooms_skipped_no_worker of bitHuman's answer (rooms with no avatar worker in them).
    skipped_rooms = models.PositiveIntegerField(null=True, blank=True)
    # The room it was sent to (`room_id`); empty: every live room of the agent.
    room_id = models.CharField(max_length=200, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    retry_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # A transcript line's identity (its time, role, text and repeat number, hashed): pulling
    # the transcript again never adds it twice. Empty for the portal's own events.
    upstream_key = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["session", "created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "upstream_key"],
                condition=~models.Q(upstream_key=""),
                name="session_event_upstream_key_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.text[:40]}"

    @property
    def is_transcript(self) -> bool:
        """A line of bitHuman's transcript (a visitor's or the avatar's), not the portal's."""
        return self.kind in (EventKind.VISITOR, EventKind.AVATAR)

    @property
    def is_rate_limited(self) -> bool:
        return self.error_code == RATE_LIMITED

    @property
    def outcome_label(self) -> str:
        """The outcome in words, as the console, the exports and the admin show it."""
        rooms = self.delivered_rooms or 0
        plural = "" if rooms == 1 else "s"
        if self.outcome == EventOutcome.DELIVERED:
            if self.room_id:
                return "delivered to this session's room"
            return f"delivered to {rooms} room{plural} (every live room of the agent)"
        if self.outcome == EventOutcome.REACHED_NO_ONE:
            skipped = self.skipped_rooms or 0
            if skipped:
                reason = f"{skipped} room{'' if skipped == 1 else 's'} had no avatar worker"
            else:
                reason = "bitHuman delivered it to 0 rooms"
            return f"Reached no one: {reason}"
        if self.outcome == EventOutcome.NO_LIVE_ROOM:
            return "No live room: open the room first"
        if self.outcome == EventOutcome.ERROR:
            if self.is_rate_limited:
                wait = self.retry_after_seconds
                return f"Slow down: retry in {wait} s" if wait else "Slow down: retry shortly"
            return f"Error: {self.error_message}"
        return ""


class QuickReply(OrgScopedModel):
    """A saved line an operator can drop into the Speak box with one click."""

    text = models.CharField(max_length=QUICK_REPLY_MAX_CHARS)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["text"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "text"], name="quick_reply_unique")
        ]
        verbose_name_plural = "quick replies"

    def __str__(self) -> str:
        return self.text[:60]


class LiveKitConfig(models.Model):
    """The organization's own LiveKit project, for `livekit` sessions. Admins manage it."""

    organization = models.OneToOneField(
        "portal.Organization", on_delete=models.CASCADE, related_name="livekit_config"
    )
    url = models.CharField(
        "LiveKit URL", max_length=300, help_text="The server URL, e.g. wss://project.livekit.cloud"
    )
    api_key = models.CharField("API key", max_length=200)
    api_secret = EncryptedTextField("API secret")
    # The dispatch name of the organization's LiveKit Agents worker (the one that runs
    # livekit-plugins-bithuman's AvatarSession): the portal dispatches it into each room.
    agent_name = models.CharField(
        "Agent name",
        max_length=128,
        default=DEFAULT_LIVEKIT_AGENT_NAME,
        help_text="The agent_name your LiveKit worker registers with (explicit dispatch).",
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "LiveKit configuration"

    def __str__(self) -> str:
        return f"{self.organization} → {self.url}"

    @property
    def api_secret_masked(self) -> str:
        return mask(self.api_secret)
