"""An agent as the API and outbound webhooks show it (one shape for both)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.models import Agent, AgentStatus

# Upstream intermediate values that are not endings are reported as `generating`.
_PUBLIC_STATUS = {AgentStatus.COMPLETED: "generating", AgentStatus.SUCCESS: "generating"}


# The columns an AgentOut is made of: lists read only these (no media paths, no poller state).
AGENT_OUT_COLUMNS = (
    "public_id",
    "name",
    "status",
    "progress",
    "current_step",
    "progress_message",
    "error_message",
    "error_request_id",
    "code",
    "model",
    "system_prompt",
    "created_at",
    "updated_at",
    "ready_at",
    "queued_until",
    "origin",
    "attempt",
    "upstream_deleted_at",
    "supported_models",
)


def agent_out(agent: Agent) -> dict[str, Any]:
    return agent_out_row({name: getattr(agent, name) for name in AGENT_OUT_COLUMNS})


def agent_out_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An AgentOut from a row of AGENT_OUT_COLUMNS (`.values()`, or an agent's attributes)."""
    is_ready = row["status"] == AgentStatus.READY
    return {
        "id": str(row["public_id"]),
        "name": row["name"],
        "status": "queued"
        if row["status"] == AgentStatus.SUBMITTING and row["queued_until"] is not None
        else _PUBLIC_STATUS.get(row["status"], row["status"]),
        "progress": 1.0 if is_ready else row["progress"],
        "current_step": row["current_step"],
        "progress_message": row["progress_message"],
        "error_message": row["error_message"],
        "error_request_id": row["error_request_id"],
        "agent_code": row["code"] if is_ready else None,
        "model": row["model"],
        "system_prompt": row["system_prompt"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "ready_at": row["ready_at"],
        "queued_until": row["queued_until"],
        "origin": row["origin"],
        "attempt": row["attempt"],
        "deleted_at_bithuman": row["upstream_deleted_at"],
        "supported_models": list(row["supported_models"] or []),
    }
