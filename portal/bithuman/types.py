"""Typed results of bitHuman calls: exactly the fields openapi.yaml gives, immutable.

The spec marks almost nothing required, so most fields are optional; the few the portal cannot
work without are required, and their absence is a `MalformedResponseError`. Unknown extra fields
are ignored so that bitHuman adding a field never breaks us.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AGENT_STATUSES",
    "TERMINAL_STATUSES",
    "Account",
    "AddableModel",
    "Agent",
    "AgentDeleted",
    "AgentGenerationPricing",
    "AgentPage",
    "AgentStatus",
    "AspectRatio",
    "ContextDelivery",
    "ContextType",
    "DynamicsPricing",
    "EmbedToken",
    "FileType",
    "FileUploaded",
    "Framing",
    "GenerateModel",
    "GenerateVersion",
    "GenerationStarted",
    "ModelAdded",
    "ModelDownload",
    "Pagination",
    "Pricing",
    "PromptUpdated",
    "RevokeAll",
    "RuntimeSession",
    "RuntimeSessionKind",
    "RuntimeSessionPage",
    "RuntimeSessionTerminated",
    "RuntimeSessionWindow",
    "RuntimeToken",
    "TalkingVideoPricing",
    "Transcript",
    "TranscriptMessage",
    "Webhook",
    "WebhookDeleted",
    "WebhookEvent",
    "WebhookWithSecret",
]

# Generation statuses. `completed` can show up at ~5 % and `success` marks finished sub-steps:
# stopping on either is a known client bug, so only these two end polling.
AGENT_STATUSES: Final = ("processing", "generating", "completed", "success", "ready", "failed")
TERMINAL_STATUSES: Final = frozenset({"ready", "failed"})

# Request vocabularies (from POST /v1/agent/generate, add-context and webhooks).
AspectRatio = Literal["16:9", "9:16", "1:1"]
Framing = Literal["portrait", "full_body"]
GenerateModel = Literal[
    "expression",
    "essence",
    "essence-1",
    "essence-2",
    "essence-2-max",
    "expression-1",
    "expression-2",
    "auto",
]
GenerateVersion = Literal["v1", "v2"]
ContextType = Literal["add_context", "speak"]
# POST /v1/files/upload (api/files.md) and POST /v1/agent/{code}/models (api/agents.md).
FileType = Literal["auto", "image", "video", "audio", "document"]
AddableModel = Literal["essence-1", "essence-2", "expression-1", "expression-2"]
WebhookEvent = Literal["agent.ready", "agent.failed"]
# GET /v2/{user_id}/runtime-sessions filters (api/runtime-sessions.md).
RuntimeSessionWindow = Literal["live", "recent", "all"]
RuntimeSessionKind = Literal["conversations", "self_hosted", "all"]


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


def _none_as_empty(value: Any) -> Any:
    # Lists may come back as null; an empty tuple spares every caller a None check.
    return () if value is None else value


class AgentStatus(_Result):
    """`data` of GET /v1/agent/status/{agent_id}."""

    status: str
    agent_id: str | None = None
    name: str | None = None
    description: str | None = None
    system_prompt: str | None = None
    image_url: str | None = None
    video_url: str | None = None
    model_url: str | None = None
    voice_id: str | None = None
    progress: float | None = None
    progress_msg: str | None = None
    current_step: str | None = None
    supported_models: tuple[str, ...] = ()
    event_type: str | None = None
    error_message: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    _supported_models_default = field_validator("supported_models", mode="before")(_none_as_empty)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_ready(self) -> bool:
        return self.status == "ready"

    @property
    def is_failed(self) -> bool:
        return self.status == "failed"


class Agent(_Result):
    """The Agent schema (GET /v1/agent/{code}, GET /v1/agents). `code` and `agent_id` are the same
    string; either may be missing upstream, so each fills the other."""

    code: str
    agent_id: str
    name: str | None = None
    description: str | None = None
    language: str | None = None
    gender: str | None = None
    model: str | None = None
    supported_models: tuple[str, ...] = ()
    subject: str | None = None
    system_prompt: str | None = None
    image_url: str | None = None
    video_url: str | None = None
    model_url: str | None = None
    voice_id: str | None = None
    status: str | None = None
    event_type: str | None = None
    progress: float | None = None
    progress_msg: str | None = None
    current_step: str | None = None
    error_message: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    dynamics: dict[str, Any] | None = None

    _supported_models_default = field_validator("supported_models", mode="before")(_none_as_empty)

    @model_validator(mode="before")
    @classmethod
    def _identifier_fill(cls, value: Any) -> Any:
        if isinstance(value, dict):
            identifier = value.get("code") or value.get("agent_id")
            if identifier is not None:
                value = {**value, "code": identifier, "agent_id": identifier}
        return value


class Pagination(_Result):
    limit: int | None = None
    offset: int | None = None
    total: int | None = None
    has_more: bool | None = None


class AgentPage(_Result):
    """GET /v1/agents: one page of agents, newest first."""

    agents: tuple[Agent, ...]
    pagination: Pagination | None = None


class GenerationStarted(_Result):
    """POST /v1/agent/generate: the job is accepted; poll its status by `agent_id`."""

    agent_id: str
    success: bool | None = None
    message: str | None = None
    status: str | None = None


class PromptUpdated(_Result):
    """POST /v1/agent/{code}: the system prompt was replaced."""

    updated: bool
    agent_code: str | None = None


class AgentDeleted(_Result):
    """DELETE /v1/agent/{code}."""

    deleted: bool
    success: bool | None = None
    agent_code: str | None = None


class ContextDelivery(_Result):
    """POST /v1/agent/{code}/speak and /add-context: how many live rooms got the message.

    api/agents.md: `delivered_to_rooms: 0`, or a non-zero `rooms_skipped_no_worker`, means the
    message reached no one (`reached_no_one`)."""

    delivered_to_rooms: int
    rooms_skipped_no_worker: int | None = None
    agent_code: str | None = None
    context_type: str | None = None

    @property
    def reached_no_one(self) -> bool:
        return self.delivered_to_rooms == 0 or bool(self.rooms_skipped_no_worker)


class EmbedToken(_Result):
    """`data` of POST /v1/embed-tokens/request: a 1-hour JWT for the hosted embed."""

    # A bearer credential: kept out of reprs so it cannot end up in logs.
    token: str = Field(repr=False)
    sid: str | None = None
    model: str | None = None
    supported_models: tuple[str, ...] = ()

    _supported_models_default = field_validator("supported_models", mode="before")(_none_as_empty)


class RuntimeToken(_Result):
    """`data` of POST /v1/runtime-tokens/request: a short-lived JWT for one avatar session."""

    token: str = Field(repr=False)
    transaction_id: str | None = None


class FileUploaded(_Result):
    """`data` of POST /v1/files/upload: where bitHuman stored the file (pass `file_url` as the
    `image` or `audio` of a generation)."""

    file_url: str
    original_source: str | None = None
    file_type: str | None = None
    file_size: int | None = None
    mime_type: str | None = None
    asset_category: str | None = None
    uploaded_at: datetime | None = None


class ModelAdded(_Result):
    """POST /v1/agent/{code}/models: `ready` (instant, or already there; `credits` 0) or
    `processing` (poll the status until `supported_models` lists it)."""

    status: str
    success: bool | None = None
    agent_id: str | None = None
    model: str | None = None
    credits: int | None = None
    supported_models: tuple[str, ...] = ()
    message: str | None = None

    _supported_models_default = field_validator("supported_models", mode="before")(_none_as_empty)


class ModelDownload(_Result):
    """`data` of GET /v1/agent/{code}/model/download?redirect=false: the artifact's URL."""

    url: str
    code: str | None = None
    model: str | None = None
    filename: str | None = None
    expires_in: int | None = None


class Account(_Result):
    """`data` of GET /v1/me: identity, plan and live credit balance."""

    user_id: str | None = None
    email: str | None = None
    plan: str | None = None
    plan_code: str | None = None
    credit_balance: int | None = None
    plan_credits_remaining: int | None = None
    topup_credits_remaining: int | None = None
    account_status: str | None = None
    upgrade_url: str | None = None
    pricing_url: str | None = None


class AgentGenerationPricing(_Result):
    unit: str | None = None
    by_model: dict[str, int] = Field(default_factory=dict)
    note: str | None = None


class TalkingVideoPricing(_Result):
    unit: str | None = None
    billing: str | None = None
    rates: dict[str, int] = Field(default_factory=dict)


class DynamicsPricing(_Result):
    flat: int | None = None
    note: str | None = None


class Pricing(_Result):
    """`data` of GET /v1/pricing: credit costs ($1 = 100 credits)."""

    unit: str | None = None
    agent_generation: AgentGenerationPricing | None = None
    talking_video: TalkingVideoPricing | None = None
    dynamics_generation: DynamicsPricing | None = None
    notes: str | None = None


class CreditSummary(_Result):
    """`data` of GET /v2/credit-summaries (api/billing.md): the authenticated account's balance.

    `balance` can go down to -11 (the grace window before suspension); `minutes_estimate` is
    the balance floor-divided by each serving mode's rate (advisory)."""

    user_id: str | None = None
    balance: float
    plan_credits: float | None = None
    topup_credits: float | None = None
    is_enterprise: bool | None = None
    minutes_estimate: dict[str, int] = Field(default_factory=dict)


class UsageEvent(_Result):
    """One row of GET /v1/usage: a metered event. `credits_change` counts credits consumed as
    positive; a `credit_refund_…` pricing code gives credits back (api/billing.md)."""

    id: str | None = None
    activity_type: str | None = None
    pricing_code: str | None = None
    app: str | None = None
    agent_code: str | None = None
    credits_change: float = 0.0
    frames_rendered: int | None = None
    room_name: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    created_at: datetime

    @property
    def is_refund(self) -> bool:
        return (self.pricing_code or "").startswith("credit_refund_")

    @property
    def spent(self) -> float:
        """Credits this event cost (negative for a refund), whichever sign bitHuman gave it."""
        amount = abs(self.credits_change)
        return -amount if self.is_refund else self.credits_change


class UsagePage(_Result):
    """GET /v1/usage: one page of usage events, newest first."""

    events: tuple[UsageEvent, ...]
    pagination: Pagination | None = None


class Webhook(_Result):
    """The Webhook schema (its signing secret is never returned after creation)."""

    id: str
    url: str
    events: tuple[str, ...] = ()
    description: str | None = None
    active: bool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    _events_default = field_validator("events", mode="before")(_none_as_empty)


class WebhookWithSecret(Webhook):
    """POST /v1/webhooks: the only answer that carries the signing secret (`whsec_...`)."""

    secret: str = Field(repr=False)


class WebhookDeleted(_Result):
    """DELETE /v1/webhooks/{webhook_id}."""

    deleted: bool
    success: bool | None = None


class RuntimeSession(_Result):
    """One entry of `sessions` in GET /v2/{user_id}/runtime-sessions (api/runtime-sessions.md)."""

    id: str
    agent_code: str | None = None
    agent_name: str | None = None
    billing_type: str | None = None
    key_alias: str | None = None
    room_name: str | None = None
    started: datetime | None = None
    last_seen: datetime | None = None
    minutes: float | None = None
    credits: float | None = None
    burn_rate_cr_per_min: float | None = None
    status: str | None = None
    has_transcript: bool | None = None

    @property
    def is_live(self) -> bool:
        return self.status == "live"


class RuntimeSessionPage(_Result):
    """`data` of GET /v2/{user_id}/runtime-sessions: the filtered sessions and account KPIs."""

    sessions: tuple[RuntimeSession, ...] = ()
    active_count: int | None = None
    live_burn_rate_cr_per_min: float | None = None
    credits_this_hour: float | None = None

    _sessions_default = field_validator("sessions", mode="before")(_none_as_empty)


class TranscriptMessage(_Result):
    timestamp: datetime | None = None
    role: str
    message: str


class Transcript(_Result):
    """`data` of GET /v2/{user_id}/runtime-sessions/{id}/messages, oldest first."""

    session_id: str | None = None
    agent_code: str | None = None
    started: datetime | None = None
    ended: datetime | None = None
    live: bool | None = None
    messages: tuple[TranscriptMessage, ...] = ()

    _messages_default = field_validator("messages", mode="before")(_none_as_empty)


class RuntimeSessionTerminated(_Result):
    """`data` of POST /v2/{user_id}/runtime-sessions/{id}/terminate."""

    session_id: str | None = None
    closed: bool | None = None
    ended: bool | None = None
    self_hosted: bool | None = None
    note: str | None = None


class RevokeAll(_Result):
    """`data` of POST /v2/{user_id}/runtime/revoke-all (the emergency stop)."""

    revoked: bool | None = None
    effective_in_seconds: int | None = None
    runtime_suspended: bool | None = None
    note: str | None = None
