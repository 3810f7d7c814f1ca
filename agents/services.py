"""Writes for agents: the generate outbox, prompt revisions, deletion.

- Generate is an outbox: the row is committed first (`submitting`), then a task calls bitHuman
  with the agent's own public id as `Idempotency-Key`. Any number of re-sends (task retries, the
  sweeper after a killed worker) replay the first answer upstream, so one row never makes two
  upstream agents.
- Status changes (the forward-only rule, the poller's batch write and leases) live in
  `agents.statuses`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from activity import services as activity_services
from agents import budgets, media, queue, ratelimit, usage
from agents.models import (
    TERMINAL_STATUSES,
    Agent,
    AgentStatus,
    PromptRevision,
    StatusSource,
)
from agents.preflight import MediaSource
from agents.statuses import agent_fail, history_record
from organizations import connections
from portal.bithuman import errors as bh_errors
from portal.errors import ApplicationError, Conflict, upstream_failure
from portal.models import Organization, User
from portal.tenancy import Actor, Role, organization_active_require, role_require
from portal.text import one_line_require

logger = logging.getLogger(__name__)

# Typical upstream durations (seconds) per model, from bitHuman's documentation: used for the
# ETA, the polling cadence, and (times AGENT_DEADLINE_FACTOR) the deadline that fails an agent.
TYPICAL_SECONDS = {
    "expression-1": 120,
    "essence-1": 300,
    "essence-2": 40 * 60,
    "expression-2": 90 * 60,
    "auto": 90 * 60,  # routed to essence-2 or expression-2: the longer of the two
}


def _actor_user(actor: Actor) -> User | None:
    """The person acting, or None when an API key acts (its actor has no user)."""
    return actor.user if actor.user_id else None


@transaction.atomic
def agent_create(
    *,
    actor: Actor,
    name: str,
    system_prompt: str,
    model: str,
    aspect_ratio: str,
    framing: str,
    transparency: bool,
    image: MediaSource,
    audio: MediaSource,
    public_id: uuid.UUID | None = None,
    image_file_url: str = "",
    audio_file_url: str = "",
) -> Agent:
    """Record the agent and queue its submission (after commit). Pre-flight ran before this.

    `public_id` comes from the form: submitting the same form twice finds the first agent
    instead of paying for a second one.
    """
    role_require(actor, Role.MEMBER, "create agents")
    organization_active_require(actor.organization)
    if not name.strip():
        raise ApplicationError("Give the agent a name.", field="name")
    one_line_require(name, field="name")
    if public_id is not None:
        existing = Agent.objects.for_org(actor.organization).filter(public_id=public_id).first()
        if existing is not None:
            return existing
    # A balance that cannot cover the model: refused here, nothing billed (agents.usage).
    usage.generation_affordable_require(org=actor.organization, model=model)
    agent = Agent(
        public_id=public_id or uuid.uuid4(),
        organization=actor.organization,
        name=name.strip(),
        system_prompt=system_prompt.strip(),
        model=model,
        aspect_ratio=aspect_ratio,
        framing=framing,
        transparency=transparency,
        image_url=image.url if not image.upload else "",
        audio_url=audio.url if not audio.upload else "",
        image_file_url=image_file_url,
        audio_file_url=audio_file_url,
        created_by=_actor_user(actor),
    )
    if image.upload:
        agent.image.save(image.upload.name or "image", image.upload, save=False)
    if audio.upload:
        agent.audio.save(audio.upload.name or "audio", audio.upload, save=False)
    try:
        with transaction.atomic():
            agent.save()
    except IntegrityError:  # the same form, submitted twice at the same moment
        duplicate = Agent.objects.for_org(actor.organization).filter(public_id=agent.public_id)
        if duplicate.exists():
            return duplicate.get()
        raise Conflict("This form was already used. Reload the page and try again.") from None
    history_record(agent, from_status="", source=StatusSource.SUBMIT)
    _first_revision_record(agent)
    _submit_enqueue(agent)
    activity_services.audit_record(
        org=actor.organization,
        actor=actor,
        action="agent.created",
        target=agent,
        details={"model": agent.model},
    )
    return agent


def _first_revision_record(agent: Agent) -> None:
    """Revision 1 of the prompt history: the prompt the agent is created with."""
    if agent.system_prompt:
        PromptRevision.objects.create(
            agent=agent,
            text=agent.system_prompt,
            author=agent.created_by,
            accepted=True,
            created_at=agent.created_at,
        )


def _submit_enqueue(agent: Agent) -> None:
    from agents import tasks

    agent_pk = agent.pk
    # robust: a broker outage must not fail the request; the row is committed `submitting` and
    # the sweeper re-sends it with the same Idempotency-Key.
    transaction.on_commit(lambda: tasks.agent_submit.delay(agent_pk), robust=True)


# Refusals that no retry will fix: the agent fails with bitHuman's reason.
_REFUSALS = (
    bh_errors.ValidationError,
    bh_errors.InsufficientCreditsError,
    bh_errors.AuthenticationError,
    bh_errors.AccountSuspendedError,
    bh_errors.PermissionDeniedError,
    bh_errors.ConcurrencyLimitError,
    bh_errors.SessionLimitError,
    bh_errors.ConflictError,
    bh_errors.MalformedResponseError,
)


def _refusal_message(error: bh_errors.BithumanError) -> str:
    if isinstance(error, bh_errors.InsufficientCreditsError):
        return (
            "Not enough bitHuman credits for this model. Top up your bitHuman account "
            "(or choose a cheaper model) and retry."
        )
    if isinstance(error, bh_errors.AuthenticationError):
        return "bitHuman rejected the organization's API secret. An admin can fix it in Settings."
    if isinstance(error, bh_errors.AccountSuspendedError):
        return (
            "The organization's bitHuman account is suspended (its balance is below bitHuman's "
            "suspension floor). Top up the bitHuman account, then retry this agent."
        )
    return f"bitHuman refused the request: {error.message}"


def submission_key(agent: Agent) -> str:
    """The Idempotency-Key of the agent's current attempt (agents.retries): the first keeps its
    public id, a retry's must differ or bitHuman would replay the failed generation."""
    if agent.attempt <= 1:
        return str(agent.public_id)
    return f"{agent.public_id}:attempt-{agent.attempt}"


class SubmitQueued(Exception):
    """bitHuman's Generate rate limit answered 429: the agent waits `seconds` for its turn."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"queued for {seconds:.0f} s")
        self.seconds = seconds


def agent_submit(*, agent_pk: int) -> Agent | None:
    """Send the generate request for an agent still `submitting` (safe to repeat).

    A 429 queues the agent (SubmitQueued, agents.queue: not a failed attempt); other transient
    errors (5xx, network) are raised for the task to retry; refusals fail the agent.
    """
    agent = Agent.objects.select_related("organization").filter(pk=agent_pk).first()
    if agent is None or agent.status != AgentStatus.SUBMITTING:
        return agent
    Agent.objects.filter(pk=agent.pk).update(submit_attempts=agent.submit_attempts + 1)
    connection = connections.connection_get(org=agent.organization)
    key = ratelimit.budget_key(connection.api_secret)
    try:
        with connections.client_for(connection=connection) as client:
            # The account's Generate budget is shared by its organizations (agents.budgets).
            key = budgets.submit_key(connection=connection, client=client)
            holding = budgets.generate_wait(key=key)
            if holding > 0:
                error = budgets.held(key=key, seconds=holding)
                raise SubmitQueued(queue.submission_queue(agent=agent, error=error))
            # Media go by URL: uploaded with the form, else now (agents.media).
            image, audio = media.agent_media_urls(client=client, agent=agent)
            started = client.agent_generate(
                prompt=agent.system_prompt or None,
                image=image,
                audio=audio,
                aspect_ratio=agent.aspect_ratio,  # type: ignore[arg-type]
                framing=agent.framing,  # type: ignore[arg-type]
                transparency=agent.transparency,
                model=agent.model,  # type: ignore[arg-type]
                idempotency_key=submission_key(agent),
            )
    except bh_errors.RateLimitedError as error:
        # Not a failed attempt: the submission waits its turn (agents.queue), and the account's
        # other organizations hold theirs until then too.
        budgets.generate_defer(key=key, error=error)
        raise SubmitQueued(queue.submission_queue(agent=agent, error=error)) from None
    except _REFUSALS as error:
        connections.connection_outcome_record(connection=connection, error=error)
        agent_fail(
            agent=agent,
            reason=_refusal_message(error),
            source=StatusSource.SUBMIT,
            request_id=error.request_id,
        )
        return agent
    if agent.organization.bithuman_suspended_at is not None:
        connections.suspension_clear(org=agent.organization)  # bitHuman took it: not suspended
    now = timezone.now()
    claimed = Agent.objects.filter(pk=agent.pk, status=AgentStatus.SUBMITTING).update(
        code=started.agent_id,
        status=AgentStatus.PROCESSING,
        updated_at=now,
        submitted_at=now,
        next_poll_at=now + timedelta(seconds=settings.AGENT_POLL_INTERVAL),
        lease_until=None,
        consecutive_errors=0,
        queued_until=None,
    )
    agent.refresh_from_db()
    if claimed:
        history_record(agent, from_status=AgentStatus.SUBMITTING, source=StatusSource.SUBMIT)
    return agent


def agents_submit_sweep(*, older_than: timedelta | None = None) -> list[int]:
    """Re-queue rows stuck in `submitting` (a worker died, a lost message): the key replays."""
    cutoff = timezone.now() - (older_than or timedelta(seconds=60))
    now = timezone.now()
    stuck = list(
        Agent.objects.filter(status=AgentStatus.SUBMITTING, created_at__lt=cutoff)
        .filter(submit_attempts__lt=settings.AGENT_SUBMIT_MAX_ATTEMPTS)
        # A queued agent waits for its turn (agents.queue), then is sent like any other.
        .filter(Q(queued_until__isnull=True) | Q(queued_until__lte=now))
        .values_list("pk", flat=True)[:500]
    )
    from agents import tasks

    for pk in stuck:
        tasks.agent_submit.delay(pk)
    given_up = Agent.objects.filter(
        status=AgentStatus.SUBMITTING,
        created_at__lt=cutoff,
        submit_attempts__gte=settings.AGENT_SUBMIT_MAX_ATTEMPTS,
    )
    for agent in given_up:
        agent_fail(
            agent=agent,
            reason="bitHuman could not be reached to start this agent. Retry it.",
            source=StatusSource.SUBMIT,
        )
    return stuck


# --- Prompt, deletion ---------------------------------------------------------------------------


def agent_prompt_update(*, actor: Actor, agent: Agent, text: str) -> PromptRevision:
    """Send the new system prompt to bitHuman, then record the revision (accepted or not)."""
    role_require(actor, Role.MEMBER, "edit prompts")
    organization_active_require(actor.organization)
    if not agent.is_ready:
        raise Conflict("The prompt can be changed once the agent is ready.", code="agent_not_ready")
    text = text.strip()
    if not text:
        raise ApplicationError("The prompt cannot be empty.", field="system_prompt")
    connection = connections.connection_get(org=agent.organization)
    try:
        with connections.client_for(connection=connection) as client:
            client.agent_prompt_update(code=agent.code, system_prompt=text)
    except bh_errors.BithumanError as error:
        PromptRevision.objects.create(
            agent=agent,
            text=text,
            author=_actor_user(actor),
            accepted=False,
            error_message=error.message,
            error_request_id=error.request_id or "",
        )
        connections.connection_outcome_record(connection=connection, error=error)
        raise upstream_failure(
            error, f"bitHuman did not accept the prompt: {error.message}", field="system_prompt"
        ) from None
    if actor.organization.bithuman_suspended_at is not None:
        connections.suspension_clear(org=actor.organization)
    with transaction.atomic():
        revision = PromptRevision.objects.create(
            agent=agent, text=text, author=_actor_user(actor), accepted=True
        )
        Agent.objects.filter(pk=agent.pk).update(system_prompt=text, updated_at=timezone.now())
        activity_services.audit_record(
            org=agent.organization,
            actor=actor,
            action="agent.prompt_changed",
            target=agent,
            details={"revision": revision.pk, "text": text[:500]},
        )
    agent.system_prompt = text
    return revision


def agent_archive(*, actor: Actor, agent: Agent) -> Agent:
    """Delete upstream (if it exists there) and keep the history locally as archived."""
    role_require(actor, Role.MEMBER, "delete agents")
    if agent.code:
        connection = connections.connection_get(org=agent.organization)
        try:
            with connections.client_for(connection=connection) as client:
                client.agent_delete(code=agent.code)
        except bh_errors.AgentNotFoundError:
            pass  # already gone upstream (or a retried delete whose first answer was lost)
        except bh_errors.BithumanError as error:
            raise upstream_failure(
                error, f"bitHuman could not delete the agent: {error.message}"
            ) from None
    now = timezone.now()
    Agent.objects.filter(pk=agent.pk).update(
        archived_at=now, updated_at=now, next_poll_at=None, lease_until=None
    )
    activity_services.audit_record(
        org=agent.organization, actor=actor, action="agent.deleted", target=agent
    )
    agent.refresh_from_db()
    return agent


GIVE_UP_CONSEQUENCES = (
    "The portal stops following it and shows it as failed for good. This does not cancel the "
    "generation at bitHuman nor refund its credits: bitHuman may still finish it and charge for "
    "it (250 to 2000 credits, depending on the model), and the portal will not bring it back. "
    "Retry starts a new generation, charged again."
)


def agent_give_up(*, actor: Actor, agent: Agent) -> Agent:
    """Fail an overdue agent for good: the user's choice (the deadline only makes it overdue)."""
    role_require(actor, Role.MEMBER, "give up on agents")
    if not agent.is_overdue:
        raise Conflict("Only an overdue agent can be given up on.", code="agent_not_overdue")
    failed = agent_fail(
        agent=agent,
        reason="Given up while overdue: bitHuman had not finished it. "
        "It may still have been charged there.",
        source=StatusSource.MANUAL,
    )
    if not failed:  # it ended meanwhile (ready or failed): that outcome stands
        agent.refresh_from_db()
        raise Conflict(f"The agent is {agent.status} now.", code="agent_not_overdue")
    activity_services.audit_record(
        org=agent.organization, actor=actor, action="agent.given_up", target=agent
    )
    return agent


def organization_agent_counts(*, org: Organization) -> dict[str, int]:
    agents = Agent.objects.for_org(org).active()
    return {"agents": agents.count(), "in_flight": agents.in_flight().count()}


# --- Polling ------------------------------------------------------------------------------------


def agent_refresh_now(*, agent: Agent) -> None:
    """Poll the agent at once rather than at its next turn (a webhook said it changed).

    Only `next_poll_at` moves: an agent leased by a running tick keeps the new time when that
    tick lets go, so the next tick polls it even if this one-agent poll finds it busy.
    """
    moved = (
        Agent.objects.filter(pk=agent.pk)
        .exclude(status__in=[*TERMINAL_STATUSES, AgentStatus.SUBMITTING])
        .update(next_poll_at=timezone.now())
    )
    if moved:
        from agents import tasks

        agent_pk = agent.pk
        transaction.on_commit(lambda: tasks.agent_poll_one.delay(agent_pk))
