"""The periodic sync with bitHuman (beat, every AGENT_SYNC_INTERVAL): notices what was done to an
organization's agents outside the portal (bitHuman's dashboard, another client of the API).

Per organization with agents, within its account's Read budget (agents.readbudget, one token a
request, shared with the poller; an account deferred by a 429 is skipped):

1. GET /v1/agents, every page (PAGE_SIZE a page, at most AGENT_SYNC_MAX_PAGES).
2. A ready agent whose prompt there differs from ours gets a revision marked "changed at
   bitHuman" (its prompt history) and that prompt. A portal edit that lands meanwhile wins: a
   revision newer than the listing means the sync leaves the agent for its next pass.
3. An agent missing from a complete listing is asked for alone (GET /v1/agent/{code}: a listing
   can skip a row when another one is deleted while it is paged); a 404 marks it deleted at
   bitHuman (`upstream_deleted_at`, a history row, no more polling): the row stays, with a
   notice on its page. Only agents last seen in this same account (`bithuman_account`, its
   /v1/me user_id) are ever marked, so switching the organization to another account (Test and
   Live, a new secret) never marks agents deleted.
Stopped by the budget or an error, an organization's pass ends without marking anything; the
next pass starts over.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents import readbudget
from agents.models import (
    Agent,
    AgentStatus,
    AgentStatusChange,
    PromptOrigin,
    PromptRevision,
    StatusSource,
)
from organizations import connections
from portal.bithuman import errors as bh_errors
from portal.bithuman import types as bh
from portal.bithuman.client import BithumanClient
from portal.models import Organization

logger = logging.getLogger(__name__)

PAGE_SIZE = 100
DELETED_MESSAGE = "Deleted at bitHuman (outside the portal): it can no longer be used."


@dataclass
class SyncReport:
    organizations: int = 0
    requests: int = 0
    prompts_changed: int = 0
    deleted: int = 0
    incomplete: int = 0  # organizations stopped by the budget or an error


class _Stop(Exception):
    """The pass of one organization ends here (budget used up, or bitHuman failed)."""


def organizations_sync(*, time_limit: float | None = None) -> SyncReport:
    """One sync pass over every organization with agents at bitHuman."""
    started = time.monotonic()
    limit = time_limit if time_limit is not None else float(settings.AGENT_SYNC_INTERVAL) / 2
    report = SyncReport()
    org_ids = (
        Agent.objects.active()
        .exclude(code="")
        .values_list("organization_id", flat=True)
        .distinct()
        .order_by("organization_id")
    )
    for org in Organization.objects.filter(pk__in=list(org_ids), suspended_at__isnull=True):
        if time.monotonic() - started > limit:
            break
        organization_sync(org=org, report=report)
    if report.organizations:
        logger.info("bitHuman sync: %s", report)
    return report


def organization_sync(*, org: Organization, report: SyncReport | None = None) -> SyncReport:
    """Sync one organization's agents with its bitHuman account."""
    report = report or SyncReport()
    report.organizations += 1
    connection = connections.connection_get(org=org)
    key = readbudget.account_of(connection)
    try:
        with connections.client_for(connection=connection) as client:
            _organization_sync(org=org, client=client, key=key, report=report)
    except _Stop:
        report.incomplete += 1
    except bh_errors.BithumanError as error:
        report.incomplete += 1
        if isinstance(error, bh_errors.RateLimitedError):
            readbudget.rate_limited_record(key=key, error=error)
        connections.connection_outcome_record(connection=connection, error=error)
        logger.info("bitHuman sync of organization %s stopped: %s", org.pk, error)
    return report


def _read(key: str, report: SyncReport) -> None:
    if not readbudget.read_take(key=key):
        raise _Stop
    report.requests += 1


def _organization_sync(
    *, org: Organization, client: BithumanClient, key: str, report: SyncReport
) -> None:
    local = list(
        Agent.objects.for_org(org)
        .active()
        .exclude(code="")
        .exclude(status=AgentStatus.SUBMITTING)
        .filter(upstream_deleted_at__isnull=True)
    )
    if not local:
        return
    connection = connections.connection_get(org=org)
    _read(key, report)
    account = connections.connection_user_id(connection=connection, client=client)
    listed_at = timezone.now()
    seen: dict[str, bh.Agent] = {}
    offset, pages = 0, 0
    max_pages = max(1, int(settings.AGENT_SYNC_MAX_PAGES))
    complete = False
    while pages < max_pages:
        _read(key, report)
        page = client.agent_list(limit=PAGE_SIZE, offset=offset)
        pages += 1
        for agent in page.agents:
            seen.setdefault(agent.code, agent)
        offset += len(page.agents)
        if not (page.pagination and page.pagination.has_more) or not page.agents:
            complete = True
            break
    connections.connection_outcome_record(connection=connection)
    now = timezone.now()
    found = [agent for agent in local if agent.code in seen]
    for agent in found:
        upstream = seen[agent.code]
        text = upstream.system_prompt
        if (
            agent.is_ready
            and text is not None
            and _prompt_apply(agent=agent, text=text, listed_at=listed_at)
        ):
            report.prompts_changed += 1
    Agent.objects.filter(pk__in=[agent.pk for agent in found]).update(
        bithuman_account=account, synced_at=now
    )
    if not complete:
        return  # more pages than allowed: nothing can be called missing
    missing = [
        agent for agent in local if agent.code not in seen and agent.bithuman_account == account
    ]
    for agent in missing:
        _read(key, report)
        try:
            client.agent_get(code=agent.code)
        except bh_errors.AgentNotFoundError:
            if _deleted_mark(agent=agent):
                report.deleted += 1
        else:  # the listing skipped it (a row deleted while it was paged)
            Agent.objects.filter(pk=agent.pk).update(synced_at=timezone.now())


def _prompt_apply(*, agent: Agent, text: str, listed_at: datetime) -> bool:
    """Record a prompt changed at bitHuman as a revision of the agent. Returns whether it did."""
    text = text.replace("\x00", "")
    with transaction.atomic():
        locked = Agent.objects.select_for_update().filter(pk=agent.pk).first()
        if locked is None or locked.system_prompt == text or not locked.is_ready:
            return False
        if locked.prompt_revisions.filter(created_at__gte=listed_at).exists():
            return False  # edited in the portal since the listing: that edit is newer
        PromptRevision.objects.create(
            agent=locked, text=text, accepted=True, origin=PromptOrigin.UPSTREAM
        )
        Agent.objects.filter(pk=locked.pk).update(system_prompt=text, updated_at=timezone.now())
    return True


def _deleted_mark(*, agent: Agent) -> bool:
    now = timezone.now()
    with transaction.atomic():
        changed = Agent.objects.filter(
            pk=agent.pk, upstream_deleted_at__isnull=True, archived_at__isnull=True
        ).update(upstream_deleted_at=now, updated_at=now, next_poll_at=None, lease_until=None)
        if changed:
            AgentStatusChange.objects.create(
                agent=agent,
                from_status=agent.status,
                to_status=agent.status,
                progress=agent.progress,
                current_step=agent.current_step,
                message=DELETED_MESSAGE,
                source=StatusSource.SYNC,
                attempt=agent.attempt,
            )
    return bool(changed)
