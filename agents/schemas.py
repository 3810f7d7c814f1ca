"""API schemas for agents: separate input and output shapes with explicit fields."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Schema
from pydantic import Field

from portal.apisupport import MAX_OFFSET, Line, Text

ModelName = Literal["expression-1", "essence-1", "essence-2", "expression-2", "auto"]


class AgentIn(Schema):
    name: Line = Field(
        min_length=1,
        max_length=100,
        description="Display name of the agent in the portal (1-100 characters).",
    )
    prompt: Text = Field(
        default="",
        max_length=10000,
        description="System prompt: who the agent is and how it talks (up to 10,000 characters).",
    )
    model: ModelName = Field(
        default="expression-1",
        description="bitHuman model used to generate the agent. `auto`: bitHuman classifies the "
        "face (or the prompt) and routes a photorealistic person to essence-2, anything else to "
        "expression-2, billing the routed model's rate.",
    )
    aspect_ratio: Literal["16:9", "9:16", "1:1"] = Field(
        default="16:9", description="Aspect ratio of the generated video."
    )
    framing: Literal["portrait", "full_body"] = Field(
        default="portrait", description="portrait (head and shoulders) or full_body."
    )
    transparency: bool = Field(
        default=False, description="Generate the avatar on a transparent background."
    )
    image_url: Text | None = Field(
        default=None,
        max_length=1000,
        description="Public link to the face image. Give this or image_base64.",
    )
    image_base64: Text | None = Field(
        default=None, description="The face image file, base64-encoded. Give this or image_url."
    )
    audio_url: Text | None = Field(
        default=None,
        max_length=1000,
        description="Public link to the voice sample. Give this or audio_base64.",
    )
    audio_base64: Text | None = Field(
        default=None, description="The voice sample file, base64-encoded. Give this or audio_url."
    )


class AgentFormIn(Schema):
    """POST /agents/multipart: AgentIn's fields as form fields; the media as files."""

    name: Line = Field(min_length=1, max_length=100, description="Display name (1-100 characters).")
    prompt: Text = Field(default="", max_length=10000, description="System prompt.")
    model: ModelName = Field(default="expression-1", description="As in POST /agents.")
    aspect_ratio: Literal["16:9", "9:16", "1:1"] = Field(
        default="16:9", description="Aspect ratio of the generated video."
    )
    framing: Literal["portrait", "full_body"] = Field(
        default="portrait", description="portrait (head and shoulders) or full_body."
    )
    transparency: bool = Field(
        default=False, description="Generate the avatar on a transparent background."
    )
    image_url: Text | None = Field(
        default=None, max_length=1000, description="A link to the face image instead of a file."
    )
    audio_url: Text | None = Field(
        default=None, max_length=1000, description="A link to the voice sample instead of a file."
    )


class AgentPatch(Schema):
    system_prompt: Text = Field(
        min_length=1,
        max_length=10000,
        description="The new system prompt; the previous one stays in the prompt history.",
    )


class AgentOut(Schema):
    id: str = Field(description="The agent's id in the portal (a UUID).")
    name: str = Field(description="Display name of the agent.")
    status: Literal[
        "submitting", "queued", "processing", "generating", "overdue", "ready", "failed"
    ] = Field(
        description="Where generation stands: submitting, queued (waiting its turn under "
        "bitHuman's Generate rate limit; see queued_until), processing, generating, overdue "
        "(unfinished long past the model's typical time: still followed, a late ready or failed "
        "applies; POST .../give-up fails it for good), ready or failed."
    )
    progress: float = Field(description="Generation progress, from 0 to 1.")
    current_step: str = Field(description="The generation step bitHuman reports last.")
    progress_message: str = Field(description="bitHuman's latest progress message.")
    error_message: str = Field(description="Why generation failed; empty otherwise.")
    error_request_id: str = Field(
        description="bitHuman's X-Request-Id of the call that failed the agent (quote it to "
        "bitHuman support); empty otherwise."
    )
    agent_code: str | None = Field(
        description="The bitHuman agent code for your own apps; null until the agent is ready."
    )
    model: str = Field(description="bitHuman model the agent is generated with.")
    system_prompt: str = Field(description="The agent's current system prompt.")
    created_at: datetime = Field(description="When the agent was created.")
    updated_at: datetime = Field(description="When the agent last changed.")
    ready_at: datetime | None = Field(description="When generation finished; null until ready.")
    origin: Literal["portal", "imported"] = Field(
        description="portal: created here; imported: brought in from the bitHuman account."
    )
    attempt: int = Field(
        description="The generation attempt the agent shows: 1, then one more per retry (a "
        "retry is a new attempt of the same agent, not a new agent)."
    )
    deleted_at_bithuman: datetime | None = Field(
        description="When the sync noticed the agent was deleted at bitHuman, outside the "
        "portal (it can no longer be used); null otherwise."
    )
    queued_until: datetime | None = Field(
        description="While queued: when the submission is sent to bitHuman again; null otherwise."
    )
    supported_models: list[str] = Field(
        description="The models bitHuman has generated for the agent (its `supported_models`; "
        "POST .../models adds one); empty until it is ready."
    )


class AgentList(Schema):
    items: list[AgentOut] = Field(description="This page of agents.")
    count: int = Field(description="How many agents match, over all pages.")


class AgentListQuery(Schema):
    status: (
        Literal["submitting", "processing", "generating", "overdue", "ready", "failed"] | None
    ) = Field(default=None, description="Only agents in this status.")
    search: Text | None = Field(
        default=None, description="Only agents whose name or code contains this text."
    )
    limit: int = Field(default=20, ge=1, le=100, description="Page size, 1 to 100.")
    offset: int = Field(
        default=0, ge=0, le=MAX_OFFSET, description="How many matching agents to skip."
    )


class StatusChangeOut(Schema):
    from_status: str = Field(description="Status before the change.")
    to_status: str = Field(description="Status after the change.")
    progress: float = Field(description="Progress (0 to 1) at the change.")
    step: str = Field(description="Generation step at the change.")
    source: str = Field(
        description="What reported the change (for example the poller or bitHuman's webhook)."
    )
    at: datetime = Field(description="When the change was recorded.")


class AgentHistory(Schema):
    items: list[StatusChangeOut] = Field(description="The agent's status changes.")


class ModelAddIn(Schema):
    model: Literal["expression-1", "essence-1", "essence-2", "expression-2"] = Field(
        description="The model to add: expression-1 (free, at once), essence-1 (250 credits), "
        "essence-2 (500, with Essence 2 Max) or expression-2 (2000). GET /v1/pricing at bitHuman "
        "gives the rates."
    )


class ModelAddOut(Schema):
    model: str = Field(description="The model asked for.")
    status: Literal["ready", "processing"] = Field(
        description="ready: launchable now; processing: bitHuman is training it (the agent's "
        "supported_models lists it when done)."
    )
    credits: int = Field(description="Credits bitHuman charged for this add (0: free or had it).")
    supported_models: list[str] = Field(description="What the agent can be launched as now.")
    models_adding: list[str] = Field(description="Models bitHuman is still adding to it.")


class AgentImportIn(Schema):
    codes: list[Line] = Field(
        min_length=1,
        max_length=50,
        description="bitHuman agent codes of the organization's bitHuman account to bring in "
        "(1-50). All or none: if any cannot be imported, none is, and the error's "
        "details.codes says why for each (not_found, already_imported, owned_elsewhere, "
        "invalid_code).",
    )


class AgentImportOut(Schema):
    items: list[AgentOut] = Field(description="The imported agents, in the order of the codes.")


class ImportableOut(Schema):
    code: str = Field(description="The bitHuman agent code.")
    name: str = Field(description="Its name at bitHuman.")
    model: str = Field(description="Its model at bitHuman.")
    status: str = Field(description="Its generation status at bitHuman.")
    created_at: datetime | None = Field(description="When it was created at bitHuman.")
    in_another_organization: bool = Field(
        description="Another organization of the portal, using the same bitHuman account, "
        "already has it: it cannot be imported here."
    )


class ImportableList(Schema):
    items: list[ImportableOut] = Field(
        description="The account's agents not in this organization yet, newest first."
    )
    truncated: bool = Field(description="More agents exist than listed (the newest 500 are).")


class AgentRetryIn(Schema):
    prompt: Text | None = Field(
        default=None,
        max_length=10000,
        description="A new system prompt for the new attempt; omit to keep the current one.",
    )
    image_url: Text | None = Field(
        default=None, max_length=1000, description="A new face image link; omit to keep the face."
    )
    image_base64: Text | None = Field(
        default=None, description="A new face image file, base64-encoded; omit to keep the face."
    )
    audio_url: Text | None = Field(
        default=None, max_length=1000, description="A new voice sample link; omit to keep it."
    )
    audio_base64: Text | None = Field(
        default=None, description="A new voice sample file, base64-encoded; omit to keep it."
    )
