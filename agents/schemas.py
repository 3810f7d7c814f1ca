"""API schemas for agents: separate input and output shapes with explicit fields."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Schema
from pydantic import Field

from portal.api import MAX_OFFSET, Text

ModelName = Literal["expression-1", "essence-1", "essence-2", "expression-2"]


class AgentIn(Schema):
    name: Text = Field(min_length=1, max_length=100)
    prompt: Text = Field(default="", max_length=10000)
    model: ModelName = "expression-1"
    aspect_ratio: Literal["16:9", "9:16", "1:1"] = "16:9"
    framing: Literal["portrait", "full_body"] = "portrait"
    transparency: bool = False
    image_url: Text | None = Field(default=None, max_length=1000)
    image_base64: Text | None = None
    audio_url: Text | None = Field(default=None, max_length=1000)
    audio_base64: Text | None = None


class AgentPatch(Schema):
    system_prompt: Text = Field(min_length=1, max_length=10000)


class AgentOut(Schema):
    id: str
    name: str
    status: Literal["submitting", "processing", "generating", "ready", "failed"]
    progress: float
    current_step: str
    progress_message: str
    error_message: str
    agent_code: str | None
    model: str
    system_prompt: str
    created_at: datetime
    updated_at: datetime
    ready_at: datetime | None


class AgentList(Schema):
    items: list[AgentOut]
    count: int


class AgentListQuery(Schema):
    status: Literal["submitting", "processing", "generating", "ready", "failed"] | None = None
    search: Text | None = None
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


class StatusChangeOut(Schema):
    from_status: str
    to_status: str
    progress: float
    step: str
    source: str
    at: datetime


class AgentHistory(Schema):
    items: list[StatusChangeOut]
