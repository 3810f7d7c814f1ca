"""Import from bitHuman: the agents of the organization's bitHuman account that are not in the
organization yet, and bringing chosen ones in (admins and above; an API key with agents:write).

- The list is GET /v1/agents, page after page (at most IMPORT_LIST_MAX agents), each page one
  token of the account's Read budget (agents.readbudget).
- Importing asks GET /v1/agent/{code} for each code first: a code the account does not own is
  "not found" whatever the portal holds, so a refusal never tells one organization about
  another's agents. Only an agent the account does own and another organization of the portal
  already has is refused as "in another organization" (the two share the bitHuman account).
- One bitHuman agent belongs to at most one organization: checked here and enforced by the
  `agent_code_one_org` constraint (a race ends in the same refusal).
- All or nothing: any refused code imports none; the refusal names each code and why.
- An imported agent gets its prompt as revision 1, bitHuman's status, model, progress and face
  link, a history row, an audit entry; one still generating is polled like the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from activity import services as activity_services
from agents import readbudget, services
from agents.models import (
    TERMINAL_STATUSES,
    Agent,
    AgentModel,
    AgentOrigin,
    AgentStatus,
    AgentStatusChange,
    GenerationAttempt,
    PromptOrigin,
    PromptRevision,
    StatusSource,
)
from organizations import connections
from portal.bithuman import errors as bh_errors
from portal.bithuman import types as bh
from portal.errors import ApplicationError, upstream_failure
from portal.models import BithumanConnection, Organization
from portal.tenancy import Actor, ApiKeyActor, Role, organization_active_require, role_require
from portal.text import is_one_line

IMPORT_LIST_MAX = 500  # agents listed at most (five pages of 100)
IMPORT_CODES_MAX = 50  # codes per import
PAGE_SIZE = 100  # bitHuman's largest page
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,20}$")

NOT_FOUND_MESSAGE = "bitHuman has no agent with this code in the organization's account."
ELSEWHERE_MESSAGE = (
    "This agent already belongs to another organization of the portal, which uses the same "
    "bitHuman account. One bitHuman agent can be in only one organization."
)


def _import_allowed(actor: Actor) -> None:
    # An API key is limited by its scopes (the API requires agents:write), not by a role.
    if not isinstance(actor, ApiKeyActor):
        role_require(actor, Role.ADMIN, "import agents from bitHuman")


# --- The list -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Importable:
    code: str
    name: str
    model: str
    status: str
    created_at: datetime | None
    # Another organization of the portal has it (they share the bitHuman account).
    elsewhere: bool = False


@dataclass
class ImportableList:
    agents: list[Importable] = field(default_factory=list)
    # More agents than IMPORT_LIST_MAX in the account: the newest are listed.
    truncated: bool = False


def codes_taken(*, org: Organization) -> set[str]:
    """The bitHuman codes the organization has: its agents' and their earlier attempts'."""
    agents = Agent.objects.for_org(org).active().exclude(code="")
    attempts = GenerationAttempt.objects.filter(
        agent__organization=org, agent__archived_at__isnull=True
    ).exclude(code="")
    return set(agents.values_list("code", flat=True)) | set(attempts.values_list("code", flat=True))


def _codes_elsewhere(*, org: Organization, codes: set[str]) -> set[str]:
    taken = Agent.objects.active().filter(code__in=codes).exclude(organization=org)
    return set(taken.values_list("code", flat=True))


def importable_list(*, actor: Actor) -> ImportableList:
    """The account's agents (newest first) the organization does not have yet."""
    _import_allowed(actor)
    org = actor.organization
    connection = connections.connection_get(org=org)
    key = readbudget.account_of(connection)
    found: list[bh.Agent] = []
    truncated = False
    try:
        with connections.client_for(connection=connection, max_retries=1) as client:
            offset = 0
            while True:
                readbudget.read_require(key=key)
                page = client.agent_list(limit=PAGE_SIZE, offset=offset)
                found.extend(page.agents)
                offset += len(page.agents)
                more = bool(page.pagination and page.pagination.has_more) and bool(page.agents)
                if not more:
                    break
                if offset >= IMPORT_LIST_MAX:
                    truncated = True
                    break
    except bh_errors.BithumanError as error:
        _failure_record(connection=connection, key=key, error=error)
        raise upstream_failure(
            error, f"bitHuman could not list the account's agents: {error.message}"
        ) from None
    connections.connection_outcome_record(connection=connection)
    taken = codes_taken(org=org)
    fresh = [agent for agent in found if agent.code not in taken]
    elsewhere = _codes_elsewhere(org=org, codes={agent.code for agent in fresh})
    seen: set[str] = set()
    listed = []
    for agent in fresh:
        if agent.code in seen:  # pages that shifted while we read them
            continue
        seen.add(agent.code)
        listed.append(
            Importable(
                code=agent.code,
                name=_name_of(agent),
                model=agent.model or "",
                status=_status_of(agent),
                created_at=agent.created_at,
                elsewhere=agent.code in elsewhere,
            )
        )
    return ImportableList(agents=listed, truncated=truncated)


def _failure_record(
    *, connection: BithumanConnection, key: str, error: bh_errors.BithumanError
) -> None:
    if isinstance(error, bh_errors.RateLimitedError):
        readbudget.rate_limited_record(key=key, error=error)
    connections.connection_outcome_record(connection=connection, error=error)


# --- What an upstream agent becomes -------------------------------------------------------------


def _name_of(agent: bh.Agent) -> str:
    name = " ".join((agent.name or "").split())[:100]
    return name if name and is_one_line(name) else agent.code


_FAMILIES = {"expression": "expression-1", "essence": "essence-1", "essence-2-max": "essence-2"}


def _model_of(agent: bh.Agent) -> str:
    """Our model for bitHuman's (`auto` and tiers fold onto a family we know)."""
    for name in (agent.model, *agent.supported_models):
        if not name:
            continue
        name = _FAMILIES.get(name, name)
        if name in AgentModel.values:
            return name
    return AgentModel.EXPRESSION_1


def _status_of(agent: bh.Agent) -> str:
    status = agent.status or ""
    if status == "success" and agent.progress == 1.0:
        return AgentStatus.READY  # a historical way of finishing (api/agents.md)
    if status in bh.AGENT_STATUSES:
        return status
    # No status given: an agent with launchable models is ready.
    return AgentStatus.READY if agent.supported_models else AgentStatus.PROCESSING


def _clean(value: str | None, limit: int | None = None) -> str:
    text = (value or "").replace("\x00", "")
    return text[:limit] if limit else text


# --- Import -------------------------------------------------------------------------------------


class ImportRefused(ApplicationError):
    """Some codes cannot be imported (nothing was): `problems` says why, per code."""

    def __init__(self, problems: dict[str, dict[str, str]]):
        count = len(problems)
        super().__init__(
            f"{count} of the chosen agents cannot be imported, so none was: "
            + "; ".join(f"{code}: {problem['message']}" for code, problem in problems.items()),
            code="import_refused",
        )
        self.problems = problems


def _codes_clean(codes: list[str]) -> list[str]:
    cleaned: list[str] = []
    for code in codes:
        code = str(code).strip()
        if code not in cleaned:
            cleaned.append(code)
    if not cleaned:
        raise ApplicationError("Choose at least one agent to import.", field="codes")
    if len(cleaned) > IMPORT_CODES_MAX:
        raise ApplicationError(
            f"Import at most {IMPORT_CODES_MAX} agents at a time.", field="codes"
        )
    return cleaned


def agents_import(*, actor: Actor, codes: list[str]) -> list[Agent]:
    """Bring the account's agents with these codes into the organization (all or none)."""
    _import_allowed(actor)
    org = actor.organization
    organization_active_require(org)
    wanted = _codes_clean(codes)
    problems: dict[str, dict[str, str]] = {}
    taken = codes_taken(org=org)
    for code in wanted:
        if not _CODE.match(code):
            problems[code] = {"code": "invalid_code", "message": "This is not a bitHuman code."}
        elif code in taken:
            problems[code] = {
                "code": "already_imported",
                "message": "This agent is already in the organization.",
            }
    connection = connections.connection_get(org=org)
    key = readbudget.account_of(connection)
    fetched: dict[str, bh.Agent] = {}
    account = ""
    try:
        with connections.client_for(connection=connection, max_retries=1) as client:
            for code in wanted:
                if code in problems:
                    continue
                readbudget.read_require(key=key)
                try:
                    fetched[code] = client.agent_get(code=code)
                except bh_errors.AgentNotFoundError:
                    problems[code] = {"code": "not_found", "message": NOT_FOUND_MESSAGE}
            if fetched and readbudget.read_take(key=key):
                try:
                    account = connections.connection_user_id(connection=connection, client=client)
                except bh_errors.BithumanError:
                    account = ""  # the sync learns it later
    except bh_errors.BithumanError as error:
        _failure_record(connection=connection, key=key, error=error)
        raise upstream_failure(
            error, f"bitHuman could not be asked about these agents: {error.message}"
        ) from None
    connections.connection_outcome_record(connection=connection)
    for code in _codes_elsewhere(org=org, codes=set(fetched)):
        problems[code] = {"code": "owned_elsewhere", "message": ELSEWHERE_MESSAGE}
    if problems:
        raise ImportRefused(problems)
    try:
        with transaction.atomic():
            imported = [
                _agent_import(actor=actor, upstream=fetched[code], account=account)
                for code in wanted
            ]
    except IntegrityError:  # another organization imported one meanwhile
        elsewhere = _codes_elsewhere(org=org, codes=set(fetched))
        raise ImportRefused(
            {code: {"code": "owned_elsewhere", "message": ELSEWHERE_MESSAGE} for code in elsewhere}
            or {
                code: {"code": "already_imported", "message": "Imported meanwhile."}
                for code in wanted
            }
        ) from None
    for agent in imported:
        if not agent.is_terminal:
            services.agent_refresh_now(agent=agent)  # polled at once, then like the others
    return imported


def _agent_import(*, actor: Actor, upstream: bh.Agent, account: str) -> Agent:
    now = timezone.now()
    status = _status_of(upstream)
    user = actor.user if actor.user_id else None
    started = upstream.created_at or now
    ended = (upstream.updated_at or now) if status in TERMINAL_STATUSES else None
    image_url = upstream.image_url or ""
    agent = Agent.objects.create(
        organization=actor.organization,
        name=_name_of(upstream),
        system_prompt=_clean(upstream.system_prompt),
        model=_model_of(upstream),
        image_url=image_url if image_url.startswith("https://") and len(image_url) <= 1000 else "",
        code=upstream.code,
        status=status,
        progress=1.0 if status == AgentStatus.READY else min(max(upstream.progress or 0.0, 0), 1),
        current_step=_clean(upstream.current_step, 30),
        progress_message=_clean(upstream.progress_msg, 300),
        error_message=_clean(upstream.error_message) if status == AgentStatus.FAILED else "",
        supported_models=list(upstream.supported_models),
        created_by=user,
        created_at=started,
        updated_at=now,
        submitted_at=started,
        ready_at=ended if status == AgentStatus.READY else None,
        failed_at=ended if status == AgentStatus.FAILED else None,
        origin=AgentOrigin.IMPORTED,
        imported_at=now,
        bithuman_account=account,
        synced_at=now,
    )
    AgentStatusChange.objects.create(
        agent=agent,
        from_status="",
        to_status=agent.status,
        progress=agent.progress,
        current_step=agent.current_step,
        message="Imported from bitHuman",
        source=StatusSource.IMPORT,
    )
    if agent.system_prompt:
        PromptRevision.objects.create(
            agent=agent,
            text=agent.system_prompt,
            author=user,
            accepted=True,
            origin=PromptOrigin.IMPORTED,
            created_at=now,
        )
    activity_services.audit_record(
        org=actor.organization,
        actor=actor,
        action="agent.imported",
        target=agent,
        details={"code": agent.code, "status": agent.status, "model": agent.model},
    )
    return agent
