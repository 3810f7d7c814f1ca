"""Celery tasks for agents: thin wrappers that take ids and call one service."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.conf import settings

from agents import services, webhooks
from portal import outage
from portal.bithuman import errors as bh_errors

logger = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=6, **outage.TASK_RETRY)
def agent_submit(self: Task, agent_pk: int) -> None:
    """Send an agent's generate request. Transient bitHuman errors retry with backoff, and so
    does an unreachable database; the same Idempotency-Key makes every re-send safe."""
    try:
        services.agent_submit(agent_pk=agent_pk)
    except services.SubmitQueued as queued:
        # Waiting for bitHuman's Generate budget is no failure: a new message for its turn, so
        # no retry limit applies. Run eagerly (tests, no broker) it would not wait: the sweeper
        # sends it when its turn comes.
        logger.info("agent %s submit queued for %.0f s", agent_pk, queued.seconds)
        if not self.request.is_eager:
            agent_submit.apply_async(args=[agent_pk], countdown=queued.seconds)
    except (bh_errors.RateLimitedError, bh_errors.UpstreamError, bh_errors.TransportError) as error:
        countdown = error.retry_after or min(2 ** (self.request.retries + 1), 60)
        logger.info("agent %s submit deferred %ss: %s", agent_pk, countdown, error.code)
        raise self.retry(countdown=countdown, exc=error) from None


@shared_task
def agents_submit_sweep() -> int:
    return len(services.agents_submit_sweep())


# --- The status poller --------------------------------------------------------------------------

_POLL_TICK_LOCK = "agents-poll-tick"


@shared_task
def agents_poll_tick() -> int:
    """One poller pass (beat, every AGENT_POLL_INTERVAL). A tick still running elsewhere makes
    this one a no-op; a backlog of ticks expires in the queue (the beat entry's `expires`)."""
    from agents import poller, ratelimit

    token = ratelimit.lock_acquire(
        name=_POLL_TICK_LOCK, seconds=poller.tick_worst_case_seconds() + 1
    )
    if token is None:
        logger.debug("Poller tick skipped: another tick is running")
        return 0
    try:
        return poller.tick().requested
    finally:
        ratelimit.lock_release(name=_POLL_TICK_LOCK, token=token)


@shared_task(**outage.TASK_RETRY)
def agent_poll_one(agent_pk: int) -> int:
    """Poll one agent now (after a webhook), if no tick holds it."""
    from agents import poller

    return poller.poll_one(agent_pk=agent_pk).requested


@shared_task
def pending_uploads_purge() -> int:
    """Delete new-agent files kept across a failed form once they expire."""
    from agents import uploads

    return uploads.pending_uploads_purge()


@shared_task
def webhook_delivery_process(delivery_id: int) -> None:
    """Act on one of bitHuman's webhook deliveries (agents.webhooks)."""
    webhooks.webhook_delivery_process(delivery_id=delivery_id)


_SYNC_LOCK = "agents-sync"


@shared_task
def agents_sync() -> int:
    """Notice prompt changes and deletions made at bitHuman (agents.sync; beat, every
    AGENT_SYNC_INTERVAL). One pass at a time."""
    from agents import ratelimit, sync

    token = ratelimit.lock_acquire(name=_SYNC_LOCK, seconds=float(settings.AGENT_SYNC_INTERVAL))
    if token is None:
        return 0
    try:
        report = sync.organizations_sync()
        return report.prompts_changed + report.deleted
    finally:
        ratelimit.lock_release(name=_SYNC_LOCK, token=token)
