"""Celery tasks of the organizations layer: thin wrappers over services."""

import logging

from celery import shared_task

from organizations import invitations

logger = logging.getLogger(__name__)


@shared_task
def invitations_expire() -> int:
    deleted = invitations.invitations_expire()
    if deleted:
        logger.info("Deleted %d long-expired invitations", deleted)
    return deleted
