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


@shared_task
def agents_poll_tick() -> int:
    """Beat, every AGENT_POLL_TICK: queue as many drains as the due agents need (at most
    AGENT_POLL_FANOUT), for any worker process to run. No lock: drains claim agents with
    leases (`SELECT ... FOR UPDATE SKIP LOCKED`), so any number can run at once, on any
    machine; a drain still queued when the next tick comes expires (`agents.poller`)."""
    from agents import poller

    wanted = poller.drains_wanted()
    for _ in range(wanted):
        agents_poll_drain.apply_async(expires=poller.drain_expires_seconds())
    return wanted


@shared_task
def agents_poll_drain() -> int:
    """Claim and poll due agents, batch after batch, until none is due or the drain's time is
    up (`agents.poller.tick`)."""
    from agents import poller

    return poller.tick().requested


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


@shared_task
def agents_model_adds_refresh() -> int:
    """Follow models added to ready agents until bitHuman lists them (agents.model_adds)."""
    from agents import model_adds

    return model_adds.agents_model_adds_refresh()


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
