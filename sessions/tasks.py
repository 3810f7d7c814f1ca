"""Celery tasks for sessions: thin wrappers over services."""

import logging

from celery import shared_task

from sessions import services

logger = logging.getLogger(__name__)


@shared_task
def sessions_end_idle() -> int:
    """Beat, every minute: end sessions idle longer than SESSION_IDLE_MINUTES."""
    ended = services.sessions_end_idle()
    if ended:
        logger.info("Ended %d idle sessions", ended)
    return ended
