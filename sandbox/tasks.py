"""Celery tasks of the sandbox: thin wrappers over services."""

import logging

from celery import shared_task

from sandbox import services, webhooks

logger = logging.getLogger(__name__)


@shared_task
def sandbox_webhook_deliver(delivery_id: str) -> None:
    """One attempt at a webhook delivery; schedules the next one with backoff if it failed."""
    countdown = webhooks.webhook_delivery_attempt(delivery_id=delivery_id)
    if countdown is not None:
        sandbox_webhook_deliver.apply_async(args=[delivery_id], countdown=countdown)


@shared_task
def sandbox_generations_advance() -> int:
    """The periodic tick: finish generations nobody polls (and fire their webhooks)."""
    finished = services.agents_advance()
    services.sandbox_housekeeping()
    if finished:
        logger.info("Sandbox: %d generation(s) finished", finished)
    return finished
