"""POST /v1/agent/{code}/models and GET /v1/agent/{code}/model/download (api/agents.md).

A model add is charged at creation rates (expression-1 is free and instant) and becomes
launchable, in `supported_models`, once the agent's simulated clock passes its training time;
adding a model the agent already has answers `ready` with 0 credits, never a second charge.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from sandbox import catalog, selectors, services, simulation
from sandbox.errors import SandboxError, invalid
from sandbox.fields import field_str
from sandbox.models import SandboxAccount, SandboxAgent, SandboxModelAdd

ADDABLE = ("essence-1", "essence-2", "expression-1", "expression-2")
DOWNLOADABLE = ("essence-1", "essence-2", "essence-2-max", "expression-2")
# Simulated training time of an add on the real service (api/agents.md's table).
ADD_SECONDS = {"expression-1": 0.0, "essence-1": 900.0, "essence-2": 2700.0, "expression-2": 3600.0}
ADD_COST = {**catalog.CREATION_COST, "expression-1": 0}
ADD_TIME_LABEL = {"essence-1": "10-20", "essence-2": "45-180", "expression-2": "45-90"}
# What an add makes launchable (the combined essence-2 add brings Max along).
_LAUNCHES = {"essence-2": ("essence-2", "essence-2-max")}
# Creations that leave a stored identity video (Essence ones generate it internally).
_IDENTITY_VIDEO_MODELS = ("essence-1", "essence-2")
# Download aliases that fold onto a family.
_DOWNLOAD_ALIASES = {
    "essence-2-light": "essence-2",
    "essence-2-gpu": "essence-2",
    "essence-2-ane": "essence-2",
    "essence-2-cpu": "essence-2",
    "expression-2-gpu": "expression-2",
    "expression-2-cpu": "expression-2",
    "expression-2-ane": "expression-2",
}
_ARTIFACT_SUFFIX = {
    "essence-1": ".imx",
    "essence-2": ".lebundle.imx",
    "essence-2-max": ".pkl",
    "expression-2": ".imx",
}


def _elapsed(agent: SandboxAgent) -> float:
    return simulation.elapsed_seconds(agent=agent, account=agent.account, now=timezone.now())


def supported_models(agent: SandboxAgent) -> list[str]:
    """A ready agent's launchable families: its creation's, then every finished add's."""
    models = list(catalog.SUPPORTED_MODELS[agent.model])
    adds = list(agent.model_adds.all())
    if adds:
        elapsed = _elapsed(agent)
        for add in adds:
            if add.ready_at_seconds <= elapsed:
                for family in _LAUNCHES.get(add.model, (add.model,)):
                    if family not in models:
                        models.append(family)
    return models


def _has_identity_video(agent: SandboxAgent) -> bool:
    return (
        agent.model in _IDENTITY_VIDEO_MODELS
        or agent.model_adds.filter(model__in=_IDENTITY_VIDEO_MODELS).exists()
    )


def model_add(*, account: SandboxAccount, code: str, body: dict) -> dict:
    """Start (or, for expression-1 and a model already there, finish at once) one add."""
    agent = selectors.agent_owned(account=account, code=code)
    model = field_str(body, "model", required=True) or ""
    if model not in ADDABLE:
        raise invalid(f"Invalid model '{model}'; must be one of: {', '.join(ADDABLE)}")
    services.agent_ready_require(agent)
    agent.refresh_from_db()
    if model == "essence-2" and not _has_identity_video(agent):
        raise SandboxError(
            422,
            "MODEL_PREREQUISITE_MISSING",
            f"agent {agent.code} has no stored identity video, which essence-2 trains from "
            "(Essence creations generate one; add essence-1 first, or use expression-2)",
        )
    if model == "essence-2" and services.stylized_subject(agent):
        raise SandboxError(
            422,
            "MODEL_SUBJECT_MISMATCH",
            "essence-2 requires a photorealistic human subject; this image looks stylized "
            "— use expression-2",
        )
    answer = {"success": True, "agent_id": agent.code, "model": model}
    with transaction.atomic():
        locked = SandboxAccount.objects.select_for_update().get(pk=account.pk)
        existing = agent.model_adds.filter(model=model).first()
        already = model in catalog.SUPPORTED_MODELS[agent.model] or existing is not None
        if already:
            pending = existing is not None and existing.ready_at_seconds > _elapsed(agent)
            return answer | {
                "status": "processing" if pending else "ready",
                "credits": 0,
                "supported_models": supported_models(agent),
                "message": f"{model} is {'being added' if pending else 'already available'}.",
            }
        cost = ADD_COST[model]
        if locked.credits < cost:
            raise SandboxError(
                402,
                "INSUFFICIENT_BALANCE",
                f"Insufficient credits: adding {model} costs {cost} credits, the balance is "
                f"{locked.credits}",
            )
        SandboxAccount.objects.filter(pk=locked.pk).update(credits=F("credits") - cost)
        SandboxModelAdd.objects.create(
            agent=agent,
            model=model,
            credits=cost,
            ready_at_seconds=_elapsed(agent) + ADD_SECONDS[model],
        )
    if model == "expression-1":
        return answer | {
            "status": "ready",
            "credits": 0,
            "supported_models": supported_models(agent),
            "message": "expression-1 enabled (instant, no charge).",
        }
    return answer | {
        "status": "processing",
        "credits": cost,
        "supported_models": supported_models(agent),
        "message": (
            f"{model} model add started (typically {ADD_TIME_LABEL[model]} minutes). {cost} "
            "credits are charged (refunded automatically if the add fails). Poll GET "
            f"/v1/agent/status/{agent.code} until supported_models includes {model}."
        ),
    }


def model_download(*, account: SandboxAccount, code: str, model: str | None) -> tuple[str, str]:
    """(the artifact's family, its file name) for a download, or the documented errors."""
    agent = selectors.agent_owned(account=account, code=code)
    family = _DOWNLOAD_ALIASES.get(model or "", model or agent.model)
    if family == "expression-1":
        raise SandboxError(
            400,
            "MODEL_NOT_DOWNLOADABLE",
            "expression-1 has no per-identity artifact to download (it renders server-side "
            "from the agent's image)",
        )
    if family not in DOWNLOADABLE:
        raise invalid(f"Invalid model '{model}'; downloadable families: {', '.join(DOWNLOADABLE)}")
    state = services.agent_refresh(agent=agent)
    if state.status != "ready" or family not in supported_models(agent):
        raise SandboxError(
            409,
            "MODEL_NOT_GENERATED",
            f"agent {agent.code}'s {family} model hasn't been generated yet",
        )
    return family, f"{agent.code}{_ARTIFACT_SUFFIX[family]}"
