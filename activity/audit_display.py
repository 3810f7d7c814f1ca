"""The audit log as people read it: human names of targets, readable details and links to the
objects that still exist ("deleted" otherwise). Used by the audit log page and its CSV."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.urls import reverse

from activity.models import AuditEvent
from portal.models import Organization

# target_type (a model name) -> what people call it.
TARGET_NAMES = {
    "agent": "Agent",
    "agentsession": "Session",
    "webhookendpoint": "Webhook endpoint",
    "membership": "Member",
    "invitation": "Invitation",
    "apikey": "API key",
    "bithumanconnection": "bitHuman connection",
    "organization": "Organization",
    "promptrevision": "Prompt revision",
    "quickreply": "Quick reply",
    "livekitconfig": "LiveKit settings",
    "outbounddelivery": "Webhook delivery",
    "user": "User",
}

# Targets whose existence is checked by public id, and where they are shown.
_MODELS = {
    "agent": "agents.Agent",
    "agentsession": "agent_sessions.AgentSession",
    "webhookendpoint": "activity.WebhookEndpoint",
    "membership": "portal.Membership",
    "invitation": "portal.Invitation",
    "apikey": "portal.ApiKey",
}

DETAIL_LABELS = {
    "model": "Model",
    "revision": "Revision",
    "text": "Text",
    "retry_of": "Retry of",
    "role": "Role",
    "left": "Left on their own",
    "mode": "Mode",
    "webhook_registered": "Webhook registered at bitHuman",
    "scopes": "Scopes",
    "url": "URL",
    "events": "Events",
    "description": "Description",
    "enabled": "Enabled",
    "previous_valid_until": "Previous secret valid until",
    "reason": "Reason",
    "kind": "Kind",
    "agent": "Agent id",
    "outcome_label": "Outcome",
    "error_message": "Error",
    "object": "Object",
    "change": "Change",
}


def target_name(target_type: str) -> str:
    return TARGET_NAMES.get(target_type, target_type.replace("_", " ").capitalize())


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "":
        return "—"
    if isinstance(value, dict) and set(value) == {"from", "to"}:
        return f"{_value(value['from'])} → {_value(value['to'])}"
    if isinstance(value, list | tuple):
        return ", ".join(_value(item) for item in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{_label(k)}: {_value(v)}" for k, v in value.items())
    return str(value)


def _label(key: str) -> str:
    return DETAIL_LABELS.get(key, key)  # an unknown key as recorded


def _end_reason(value: Any) -> Any:
    field = apps.get_model("agent_sessions.AgentSession")._meta.get_field("end_reason")
    return dict(field.choices or []).get(value, value)


def details_display(details: dict[str, Any], *, action: str = "") -> list[tuple[str, str]]:
    """(label, text) pairs of an entry's details, in the order recorded."""
    shown = dict(details or {})
    if action == "session.ended" and "reason" in shown:
        shown["reason"] = _end_reason(shown["reason"])
    if "outcome_label" in shown:
        shown.pop("outcome", None)
    pairs: list[tuple[str, str]] = []
    if "from" in shown and "to" in shown:
        pairs.append(("Change", f"{_value(shown.pop('from'))} → {_value(shown.pop('to'))}"))
    pairs += [(_label(key), _value(value)) for key, value in shown.items()]
    return pairs


def details_json(details: dict[str, Any]) -> str:
    return json.dumps(details or {}, ensure_ascii=False, sort_keys=True, default=str)


def _url(org: Organization, target_type: str, target_id: str) -> str:
    slug = org.slug
    if target_type == "agent":
        return reverse("agent_detail", args=[slug, target_id])
    if target_type == "agentsession":
        return reverse("session_console", args=[slug, target_id])
    if target_type == "webhookendpoint":
        return reverse("webhook_detail", args=[slug, target_id])
    if target_type in ("membership", "invitation"):
        return reverse("members", args=[slug])
    if target_type in ("apikey", "bithumanconnection"):
        return reverse("org_settings", args=[slug])
    if target_type == "organization":
        return reverse("org_home", args=[slug])
    return ""


@dataclass(frozen=True)
class AuditRow:
    event: AuditEvent
    target_name: str
    target_url: str  # empty: no page to go to
    target_deleted: bool
    details: list[tuple[str, str]]


def audit_rows(*, org: Organization, events: list[AuditEvent]) -> list[AuditRow]:
    """One query per kind of target on the page tells which targets still exist."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event.target_type in _MODELS and event.target_id:
            wanted[event.target_type].add(event.target_id)
    existing: dict[str, set[str]] = {}
    for target_type, ids in wanted.items():
        model = apps.get_model(_MODELS[target_type])
        valid = [i for i in ids if _is_uuid(i)]
        existing[target_type] = {
            str(public_id)
            for public_id in model.objects.filter(
                organization=org, public_id__in=valid
            ).values_list("public_id", flat=True)
        }
    rows = []
    for event in events:
        kind = event.target_type
        deleted = kind in existing and event.target_id not in existing[kind]
        url = "" if deleted or not kind else _url(org, kind, event.target_id)
        rows.append(
            AuditRow(
                event=event,
                target_name=target_name(kind) if kind else "",
                target_url=url,
                target_deleted=deleted,
                details=details_display(event.details, action=event.action),
            )
        )
    return rows


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
