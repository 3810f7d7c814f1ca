"""Celery tasks of the activity app: thin wrappers over services."""

from __future__ import annotations

import logging

from celery import shared_task

from activity import outbound
from portal import outage

logger = logging.getLogger(__name__)


@shared_task(**outage.TASK_RETRY)
def outbound_delivery_send(delivery_pk: int) -> None:
    outbound.delivery_attempt(delivery_pk=delivery_pk)


@shared_task
def outbound_deliveries_sweep() -> int:
    """Beat: send due retries (each task claims its delivery), then disable endpoints that have
    been failing for days."""
    due = outbound.deliveries_due()
    for pk in due:
        outbound_delivery_send.delay(pk)
    disabled = outbound.endpoints_disable_failing()
    if disabled:
        logger.info("Disabled %d failing webhook endpoints", disabled)
    return len(due)
