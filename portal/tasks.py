"""Celery tasks of the tenancy core: thin wrappers over services."""

import logging

from celery import shared_task

from portal import services

logger = logging.getLogger(__name__)


@shared_task
def invitations_expire() -> int:
    deleted = services.invitations_expire()
    if deleted:
        logger.info("Deleted %d long-expired invitations", deleted)
    return deleted


@shared_task
def webhook_delivery_process(delivery_id: int) -> None:
    services.webhook_delivery_process(delivery_id=delivery_id)
