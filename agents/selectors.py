"""Reads for agents: lists, the progress view-model, pricing for the form."""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass
from uuid import UUID

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q, QuerySet
from django.utils import timezone

from agents import ratelimit
from agents.models import Agent, AgentModel, AgentStatus, GenerationAttempt, PromptRevision
from agents.services import TYPICAL_SECONDS
from organizations import connections
from portal.bithuman.errors import BithumanError
from portal.models import Organization
from portal.tenancy import tenant_get

# Credits per model as documented by bitHuman; used when /v1/pricing cannot be reached.
DOCUMENTED_COST = {
    "expression-1": 250,
    "essence-1": 250,
    "essence-2": 500,
    "expression-2": 2000,
    "auto": 2000,  # the routed model's rate: 500 (essence-2) or 2000 (expression-2)
}
TYPICAL_LABEL = {
    "expression-1": "about 1-2 min",
    "essence-1": "about 2-5 min",
    "essence-2": "about 25-40 min",
    "expression-2": "about 1-1.5 h",
}
PRICING_CACHE_SECONDS = 3600


def agent_get(*, org: Organization, public_id: str | UUID, archived: bool = False) -> Agent:
    """The organization's agent with this id (archived ones only with `archived=True`), or
    NotFound: pages, the API and tasks fetch agents through here."""
    agents = Agent.objects.for_org(org)
    return tenant_get(agents if archived else agents.active(), public_id)


def agent_list(
    *, org: Organization, query: str = "", status: str = "", model: str = ""
) -> QuerySet[Agent]:
    agents = Agent.objects.for_org(org).active()
    if query:
        agents = agents.filter(Q(name__icontains=query) | Q(code__iexact=query.strip()))
    if status == "in_flight":
        agents = agents.in_flight()
    elif status == AgentStatus.GENERATING:  # upstream's completed/success are still generating
        agents = agents.filter(
            status__in=[AgentStatus.GENERATING, AgentStatus.COMPLETED, AgentStatus.SUCCESS]
        )
    elif status:
        agents = agents.filter(status=status)
    if model:
        agents = agents.filter(model=model)
    # The id breaks ties (agents created in one go share created_at): pages never overlap.
    # agent_active_list_idx serves this order, and the count from the index alone.
    return agents.order_by("-created_at", "-id")


# A list's count is exact below this many matching agents; above, counting costs more than the
# page itself (10,000 index entries per request), so it is remembered for a few seconds.
COUNT_EXACT_BELOW = 1000


def agent_list_count(
    *,
    org: Organization,
    agents: QuerySet[Agent],
    filters: str,
    offset: int,
    limit: int,
    page_size: int,
) -> int:
    """How many agents `agents` (the `agent_list` of `org` with `filters`) matches, for a page of
    `page_size` rows read at `offset` with `limit`.

    A page that is not full ends the list, so it gives the count at no cost. Otherwise COUNT(*):
    exact below COUNT_EXACT_BELOW, and above it remembered for AGENT_LIST_COUNT_CACHE_SECONDS
    (10 s), so a large organization's count may lag its newest agents by that much.
    """
    if page_size < limit and (page_size or not offset):
        return offset + page_size
    digest = hashlib.sha256(filters.encode()).hexdigest()[:16]
    key = f"agents:list-count:{org.pk}:{digest}"
    cached = cache.get(key)
    if cached is not None:
        return int(cached)
    count = agents.count()
    if count >= COUNT_EXACT_BELOW:
        seconds = settings.AGENT_LIST_COUNT_CACHE_SECONDS
        cache.set(key, count, seconds)
    return count


def model_costs(*, org: Organization) -> dict[str, int]:
    """Credits per model from GET /v1/pricing (cached an hour per bitHuman account), else the
    documented table."""
    # Per account (never one organization's prices for another's account) and mode.
    connection = connections.connection_get(org=org)
    account = ratelimit.budget_key(connection.api_secret)
    key = f"bithuman:pricing:v1:{connection.mode}:{account}"
    costs = cache.get(key)
    if costs is None:
        try:
            with connections.client_for(connection=connection, timeout=3, max_retries=0) as client:
                pricing = client.pricing_get()
            by_model = pricing.agent_generation.by_model if pricing.agent_generation else {}
            costs = {**DOCUMENTED_COST, **by_model}
            cache.set(key, costs, PRICING_CACHE_SECONDS)
        except BithumanError:
            costs = DOCUMENTED_COST
    return costs


def model_choices(*, org: Organization) -> list[tuple[str, str]]:
    costs = model_costs(org=org)
    choices = [
        (value, f"{label} · {costs.get(value, '?')} credits · {TYPICAL_LABEL[value]}")
        for value, label in AgentModel.choices
        if value != AgentModel.AUTO
    ]
    # api/agents.md: `auto` classifies the face (or the prompt) and bills the routed model.
    low, high = costs.get("essence-2", 500), costs.get("expression-2", 2000)
    choices.append(
        (
            AgentModel.AUTO,
            f"Auto: bitHuman picks Essence 2 for a photorealistic person, Expression 2 "
            f"otherwise · {low} or {high} credits",
        )
    )
    return choices


STEPS = [
    ("payment", "Payment"),
    ("persona", "Persona"),
    ("voice_image", "Voice and image"),
    ("video", "Video"),
    ("lip_sync", "Lip sync"),
    ("done", "Ready"),
]
_STEP_INDEX = {key: i for i, (key, _label) in enumerate(STEPS)}


@dataclass(frozen=True)
class StepView:
    key: str
    label: str
    state: str  # "done", "current", "todo", "failed"


@dataclass(frozen=True)
class Progress:
    percent: int
    steps: list[StepView]
    elapsed_seconds: int | None
    eta_seconds: int | None


def agent_progress(*, agent: Agent) -> Progress:
    """The step timeline, percent, elapsed time and ETA: computed, never stored."""
    current = len(STEPS) - 1 if agent.is_ready else _STEP_INDEX.get(agent.current_step, 0)
    steps = []
    for i, (key, label) in enumerate(STEPS):
        if agent.is_ready or i < current:
            state = "done"
        elif i == current:
            state = "failed" if agent.is_failed else "current"
        else:
            state = "todo"
        steps.append(StepView(key=key, label=label, state=state))
    started = agent.submitted_at or agent.created_at
    end = agent.ready_at or agent.failed_at or timezone.now()
    elapsed = int((end - started).total_seconds())
    eta = None
    if not agent.is_terminal and not agent.is_overdue:  # overdue: no honest estimate
        typical = TYPICAL_SECONDS.get(agent.model, 300)
        if agent.progress > 0.02:
            eta = max(0, int(elapsed / agent.progress - elapsed))
        else:
            eta = max(0, typical - elapsed)
    return Progress(
        percent=100 if agent.is_ready else round(agent.progress * 100),
        steps=steps,
        elapsed_seconds=elapsed,
        eta_seconds=eta,
    )


FAILURE_FIXES = [
    ("image", "Use a clear, front-facing photo of one person (JPEG/PNG/WebP, under 10 MB)."),
    ("download", "Make sure the image and audio links are public https URLs that download."),
    ("lip", "Try a cleaner voice sample: 3-10 s of speech without music or noise."),
    ("credit", "Top up your bitHuman credits, or pick a cheaper model."),
    ("secret", "An admin can check the bitHuman connection in Settings."),
]


def failure_fix(*, agent: Agent) -> str:
    message = agent.error_message.lower()
    for needle, fix in FAILURE_FIXES:
        if needle in message:
            return fix
    return "Retry with the same inputs; if it fails again, try another image or voice sample."


_FIX_FIELDS = (
    ("voice", ("audio", "voice", "lip sync", "lip_sync")),
    ("face", ("image", "face", "portrait", "subject")),
    ("prompt", ("prompt", "persona")),
)


def failure_field(*, agent: Agent) -> str:
    """Which input the failure message points at ("face", "voice", "prompt"), for the retry
    form; "" when it names none."""
    message = agent.error_message.lower()
    for field, needles in _FIX_FIELDS:
        if any(needle in message for needle in needles):
            return field
    return ""


@dataclass(frozen=True)
class RevisionView:
    revision: PromptRevision
    number: int  # 1 is the prompt the agent was created with
    # (kind, text) with kind in "add", "del", "same": word by word, whitespace kept, so the page
    # wraps it like prose and marks only what changed. Revision 1 is all "same" (nothing before).
    diff: list[tuple[str, str]]


_TOKENS = re.compile(r"\s+|[^\s]+")


# An unchanged run this short (a word and its spaces) between two changes joins them: "cheerful
# museum guide" -> "strict museum guard" reads as one change, not two.
_JOIN_TOKENS = 3


def prompt_diff(previous: str, text: str) -> list[tuple[str, str]]:
    """`text` against `previous`, by word: runs of unchanged, removed and added text."""
    before, after = _TOKENS.findall(previous), _TOKENS.findall(text)
    opcodes = difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes()
    # (changed, removed tokens, added tokens), short unchanged runs between changes joined in.
    runs: list[tuple[bool, list[str], list[str]]] = []
    for index, (op, a1, a2, b1, b2) in enumerate(opcodes):
        changed = op != "equal"
        between = 0 < index < len(opcodes) - 1
        if not changed and between and a2 - a1 <= _JOIN_TOKENS:
            changed = True
        if runs and runs[-1][0] and changed:
            runs[-1][1].extend(before[a1:a2])
            runs[-1][2].extend(after[b1:b2])
        else:
            runs.append((changed, before[a1:a2], after[b1:b2]))
    segments: list[tuple[str, str]] = []
    for changed, removed, added in runs:
        if not changed:
            segments.append(("same", "".join(added)))
            continue
        if removed:
            segments.append(("del", "".join(removed)))
        if added:
            segments.append(("add", "".join(added)))
    return segments


def revision_history(*, agent: Agent) -> list[RevisionView]:
    """Newest first. Each accepted revision is compared with the accepted one before it (a
    refused one never became the prompt); revision 1, the creation prompt, with nothing."""
    revisions = list(agent.prompt_revisions.select_related("author"))
    views = []
    for index, revision in enumerate(revisions):
        number = len(revisions) - index
        earlier = [r for r in revisions[index + 1 :] if r.accepted]
        if number == 1 or not earlier:
            diff = [("same", revision.text)]
        else:
            diff = prompt_diff(earlier[0].text, revision.text)
        views.append(RevisionView(revision=revision, number=number, diff=diff))
    return views


def agent_statuses_in_flight() -> list[str]:
    return [s for s in AgentStatus.values if s not in (AgentStatus.READY, AgentStatus.FAILED)]


@dataclass(frozen=True)
class AttemptView:
    number: int
    code: str
    status: str
    error_message: str
    error_request_id: str
    changes: list[str]
    started_at: object
    ended_at: object
    current: bool


def _status_label(status: str) -> str:
    return AgentStatus(status).label if status in AgentStatus.values else status


def attempts_of(*, agent: Agent) -> list[AttemptView]:
    """The agent's generation attempts, oldest first (agents.retries), once it has been retried:
    the finished ones as recorded, the current one as the row shows it. Empty for one attempt."""
    if agent.attempt <= 1:
        return []
    views = []
    for attempt in GenerationAttempt.objects.filter(agent=agent).order_by("number"):
        current = attempt.number == agent.attempt
        views.append(
            AttemptView(
                number=attempt.number,
                code=agent.code if current else attempt.code,
                status=agent.get_status_display() if current else _status_label(attempt.status),
                error_message=agent.error_message if current else attempt.error_message,
                error_request_id=agent.error_request_id if current else attempt.error_request_id,
                changes=list(attempt.changes or []),
                started_at=attempt.started_at,
                ended_at=(agent.ready_at or agent.failed_at) if current else attempt.ended_at,
                current=current,
            )
        )
    return views
