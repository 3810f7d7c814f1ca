"""What the agents app tells the rest of the world: audit entries and outbound webhook events,
with the payload built here (agents.payloads) and handed to the activity layer."""

from __future__ import annotations

import json

from activity import outbound
from activity import services as activity_services
from agents.models import Agent
from agents.payloads import agent_out


def agent_outcome_record(*, agent: Agent, previous: str) -> None:
    """An agent reached ready or failed: one audit entry (system) and the webhook event."""
    if agent.status == previous or agent.status not in ("ready", "failed"):
        return
    event_type = f"agent.{agent.status}"
    details = {"model": agent.model}
    if agent.error_message:
        details["error_message"] = agent.error_message[:500]
    activity_services.audit_record(
        org=agent.organization, actor=None, action=event_type, target=agent, details=details
    )
    data = json.loads(json.dumps(agent_out(agent), default=str))
    outbound.webhook_emit(org=agent.organization, event_type=event_type, data=data)
