"""Response bodies, shaped exactly as openapi.yaml's schemas (no field the spec does not name)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from sandbox import model_adds
from sandbox.models import (
    SandboxAccount,
    SandboxAgent,
    SandboxWebhook,
    SandboxWebhookDelivery,
)
from sandbox.simulation import AgentState


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _image_url(request: HttpRequest, agent: SandboxAgent) -> str:
    """The input image: its URL, or the uploaded one; otherwise the sandbox's generated face."""
    if agent.image_url:
        return agent.image_url
    name = "sandbox:agent_face" if agent.image_type else "sandbox:face"
    return request.build_absolute_uri(reverse(name, args=[agent.code]))


def _common(request: HttpRequest, agent: SandboxAgent, state: AgentState) -> dict[str, Any]:
    data: dict[str, Any] = {
        "agent_id": agent.code,
        "name": agent.name,
        "description": agent.description,
        "status": state.status,
        "system_prompt": agent.system_prompt,
        "image_url": _image_url(request, agent),
        "progress": state.progress,
        "progress_msg": state.progress_msg,
        "current_step": state.current_step,
        "supported_models": model_adds.supported_models(agent) if state.status == "ready" else [],
        "event_type": state.event_type,
        "created_at": iso(agent.created_at),
        "updated_at": iso(agent.updated_at),
    }
    if state.status == "ready":
        data["model_url"] = request.build_absolute_uri(
            reverse("sandbox:model_file", args=[agent.code])
        )
    if state.status == "failed":
        data["error_message"] = state.error_message
    return data


def agent_status_data(request: HttpRequest, agent: SandboxAgent, state: AgentState) -> dict:
    """`data` of GET /v1/agent/status/{agent_id}."""
    return _common(request, agent, state)


def agent_data(request: HttpRequest, agent: SandboxAgent, state: AgentState) -> dict:
    """The `Agent` schema (GET /v1/agent/{code}, GET /v1/agents)."""
    return {"code": agent.code, "model": agent.model, **_common(request, agent, state)}


def me_data(request: HttpRequest, account: SandboxAccount) -> dict[str, Any]:
    return {
        "user_id": str(account.public_id),
        "email": account.email,
        "plan": account.plan,
        "plan_code": f"membership_{account.plan}",
        "credit_balance": account.credits,
        "plan_credits_remaining": account.credits,
        "topup_credits_remaining": 0,
        "account_status": "suspended" if account.suspended else "active",
        "upgrade_url": "https://www.bithuman.ai/pricing",
        "pricing_url": request.build_absolute_uri(reverse("sandbox:pricing")),
    }


def webhook_data(webhook: SandboxWebhook, *, with_secret: bool = False) -> dict[str, Any]:
    data = {
        "id": str(webhook.id),
        "url": webhook.url,
        "events": list(webhook.events),
        "description": webhook.description or None,
        "active": webhook.active,
        "created_at": iso(webhook.created_at),
        "updated_at": iso(webhook.updated_at),
    }
    if with_secret:
        data["secret"] = webhook.secret
    return data


def delivery_data(delivery: SandboxWebhookDelivery) -> dict[str, Any]:
    return {
        "id": str(delivery.id),
        "event_type": delivery.event_type,
        "status_code": delivery.status_code,
        "attempts": delivery.attempts,
        "delivered": delivery.delivered,
        "created_at": iso(delivery.created_at),
        "updated_at": iso(delivery.updated_at),
    }


def account_knobs(account: SandboxAccount) -> dict[str, Any]:
    """The sandbox control API's view of an account (not part of bitHuman's API)."""
    return {
        "user_id": str(account.public_id),
        "label": account.label,
        "plan": account.plan,
        "credits": account.credits,
        "suspended": account.suspended,
        "session_limit": account.session_limit,
        "runtime_suspended": account.runtime_suspended,
        "latency_ms": account.latency_ms,
        "error_rate": account.error_rate,
        "force_429_rate": account.force_429_rate,
        "time_scale": account.time_scale,
        "clock_offset_seconds": account.clock_offset_seconds,
    }
