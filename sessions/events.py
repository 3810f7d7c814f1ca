"""What the sessions app tells the rest of the world: audit entries and outbound webhook events,
with the payloads built here (sessions.payloads) and handed to the activity layer."""

from __future__ import annotations

import json
from typing import Any

from activity import outbound
from activity import services as activity_services
from activity.models import AuditAction, WebhookEvent
from sessions.models import AgentSession, SessionEvent
from sessions.payloads import event_out, session_out


def _session_data(session: AgentSession) -> dict[str, Any]:
    data = session_out(session)
    data.pop("join_url", None)  # a bearer link to the room: never sent to third parties
    return json.loads(json.dumps(data, default=str))


def session_started_record(*, actor: activity_services.Actor, session: AgentSession) -> None:
    activity_services.audit_record(
        org=session.organization,
        actor=actor,
        action=AuditAction.SESSION_STARTED,
        target=session,
        details={"kind": session.kind, "agent": str(session.agent.public_id)},
    )
    outbound.webhook_emit(
        org=session.organization,
        event_type=WebhookEvent.SESSION_STARTED,
        data=_session_data(session),
    )


def session_ended_record(
    *, actor: activity_services.Actor, session: AgentSession, staff: bool = False
) -> None:
    activity_services.audit_record(
        org=session.organization,
        actor=actor,
        action=AuditAction.SESSION_ENDED,
        target=session,
        details={"reason": session.end_reason},
        staff=staff,
    )
    outbound.webhook_emit(
        org=session.organization, event_type=WebhookEvent.SESSION_ENDED, data=_session_data(session)
    )


def session_message_record(
    *, actor: activity_services.Actor, session: AgentSession, event: SessionEvent
) -> None:
    """Speak or context sent: who, the text (shortened) and the outcome."""
    action = AuditAction.SESSION_SPEAK if event.kind == "speak" else AuditAction.SESSION_CONTEXT
    activity_services.audit_record(
        org=session.organization,
        actor=actor,
        action=action,
        target=session,
        details={
            "text": event.text[:500],
            "outcome": event.outcome,
            "outcome_label": event.outcome_label,
        },
    )
    data = json.loads(json.dumps(event_out(event), default=str))
    data["session_id"] = str(session.public_id)
    data["outcome_label"] = event.outcome_label
    outbound.webhook_emit(
        org=session.organization, event_type=WebhookEvent.SESSION_MESSAGE, data=data
    )


def session_transcript_line_record(*, session: AgentSession, event: SessionEvent) -> None:
    """A visitor's or the avatar's line from bitHuman's transcript: a `session.message` webhook
    (no audit entry: nobody in the organization did it)."""
    data = json.loads(json.dumps(event_out(event), default=str))
    data["session_id"] = str(session.public_id)
    data["outcome_label"] = ""
    outbound.webhook_emit(
        org=session.organization, event_type=WebhookEvent.SESSION_MESSAGE, data=data
    )
