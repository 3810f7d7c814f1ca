"""Adding a model to a ready agent (POST /v1/agent/{code}/models, api/agents.md), price first.

An add is billed at the model's creation rate (expression-1: free and instant) and, except for
expression-1, trains for minutes to hours while the agent keeps serving. The agent's
`models_adding` lists adds still training; a beat task re-reads those agents' status once a
minute (`agents_model_adds_refresh`) until `supported_models` shows the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from activity import services as activity_services
from agents import selectors
from agents.models import Agent
from organizations import connections
from portal.bithuman import errors as bh_errors
from portal.bithuman.types import AddableModel, ModelAdded
from portal.errors import ApplicationError, Conflict, upstream_failure
from portal.models import Organization
from portal.tenancy import Actor, Role, organization_active_require, role_require

logger = logging.getLogger(__name__)

ADDABLE: tuple[AddableModel, ...] = ("expression-1", "essence-1", "essence-2", "expression-2")
LABELS = {
    "expression-1": "Expression 1",
    "essence-1": "Essence 1",
    "essence-2": "Essence 2 (with Essence 2 Max)",
    "expression-2": "Expression 2",
}
TIMES = {
    "expression-1": "at once",
    "essence-1": "about 10-20 min",
    "essence-2": "45 min to 3 h",
    "expression-2": "about 1-1.5 h",
}
# What an add makes launchable: the combined essence-2 add brings Essence 2 Max along.
_LAUNCHES = {"essence-2": ("essence-2", "essence-2-max")}


@dataclass(frozen=True)
class ModelChoice:
    model: str
    label: str
    credits: int
    time: str

    @property
    def text(self) -> str:
        price = "free" if self.credits == 0 else f"{self.credits} credits"
        return f"{self.label} · {price} · {self.time}"


def model_add_price(*, org: Organization, model: str) -> int:
    """Credits an add costs: the creation rate from bitHuman's pricing (GET /v1/pricing, as the
    new-agent form reads it); expression-1 is free (api/billing.md)."""
    if model == "expression-1":
        return 0
    return int(selectors.model_costs(org=org).get(model, selectors.DOCUMENTED_COST[model]))


def model_add_choices(*, agent: Agent) -> list[ModelChoice]:
    """The models the agent can still be given, each with its price and time."""
    have = set(agent.supported_models) | {entry["model"] for entry in agent.models_adding}
    return [
        ModelChoice(
            model=model,
            label=LABELS[model],
            credits=model_add_price(org=agent.organization, model=model),
            time=TIMES[model],
        )
        for model in ADDABLE
        if model not in have
    ]


def agent_model_add(*, actor: Actor, agent: Agent, model: str) -> ModelAdded:
    """Ask bitHuman to add `model` to the ready agent; audited with what it charged."""
    role_require(actor, Role.MEMBER, "add models to agents")
    organization_active_require(actor.organization)
    if not agent.is_ready:
        raise Conflict("A model can be added once the agent is ready.", code="agent_not_ready")
    if model not in ADDABLE:
        raise ApplicationError(
            f"Choose one of: {', '.join(ADDABLE)}.", field="model", code="validation_error"
        )
    connection = connections.connection_get(org=agent.organization)
    try:
        with connections.client_for(connection=connection) as client:
            added = client.agent_model_add(code=agent.code, model=model)  # type: ignore[arg-type]
    except bh_errors.BithumanError as error:
        connections.connection_outcome_record(connection=connection, error=error)
        raise upstream_failure(
            error, f"bitHuman did not add {model}: {error.message}", field="model"
        ) from None
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        supported = list(added.supported_models) or list(locked.supported_models)
        adding = [entry for entry in locked.models_adding if entry["model"] != model]
        if added.status != "ready" and not _launchable(model, supported):
            adding.append(
                {
                    "model": model,
                    "credits": added.credits or 0,
                    "started_at": timezone.now().isoformat(),
                }
            )
        Agent.objects.filter(pk=agent.pk).update(
            supported_models=supported, models_adding=adding, updated_at=timezone.now()
        )
        activity_services.audit_record(
            org=agent.organization,
            actor=actor,
            action="agent.model_added",
            target=agent,
            details={"model": model, "credits": added.credits or 0, "status": added.status},
        )
    agent.refresh_from_db()
    return added


def _launchable(model: str, supported: list[str]) -> bool:
    return all(family in supported for family in _LAUNCHES.get(model, (model,)))


def agent_model_adds_refresh(*, agent: Agent) -> bool:
    """Re-read a ready agent's `supported_models` (one status call) and drop the adds that
    finished. Whether anything changed."""
    if not agent.models_adding or not agent.code:
        return False
    connection = connections.connection_get(org=agent.organization)
    with connections.client_for(connection=connection) as client:
        status = client.agent_status_get(agent_id=agent.code)
    supported = list(status.supported_models)
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        adding = [e for e in locked.models_adding if not _launchable(e["model"], supported)]
        changed = adding != locked.models_adding or supported != locked.supported_models
        if changed:
            Agent.objects.filter(pk=agent.pk).update(
                supported_models=supported or locked.supported_models,
                models_adding=adding,
                updated_at=timezone.now(),
            )
    agent.refresh_from_db()
    return changed


def agents_model_adds_refresh(*, batch: int = 50) -> int:
    """Beat: refresh every agent with an add still training (oldest change first)."""
    refreshed = 0
    agents = (
        Agent.objects.active()
        .exclude(models_adding=[])
        .select_related("organization")
        .order_by("updated_at")[:batch]
    )
    for agent in agents:
        try:
            refreshed += agent_model_adds_refresh(agent=agent)
        except bh_errors.BithumanError as error:
            logger.info("model adds of agent %s not refreshed: %s", agent.pk, error.code)
    return refreshed


def agent_model_download_url(*, actor: Actor, agent: Agent, model: str) -> str:
    """A short-lived URL of the agent's model file (GET /v1/agent/{code}/model/download with
    `redirect=false`): the browser follows it, the API secret stays here."""
    role_require(actor, Role.MEMBER, "download agent models")
    if not agent.is_ready:
        raise Conflict(
            "The model can be downloaded once the agent is ready.", code="agent_not_ready"
        )
    connection = connections.connection_get(org=agent.organization)
    try:
        with connections.client_for(connection=connection) as client:
            return client.agent_model_download(code=agent.code, model=model or None).url
    except bh_errors.BithumanError as error:
        connections.connection_outcome_record(connection=connection, error=error)
        raise upstream_failure(
            error, f"bitHuman has no {model or 'model'} file for this agent: {error.message}"
        ) from None
