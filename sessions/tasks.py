"""Celery tasks for sessions: thin wrappers over services."""

import logging

from celery import shared_task

from sessions import services, transcripts, upstream

logger = logging.getLogger(__name__)


@shared_task
def sessions_end_idle() -> int:
    """Beat, every minute: end sessions idle longer than SESSION_IDLE_MINUTES."""
    ended = services.sessions_end_idle()
    if ended:
        logger.info("Ended %d idle sessions", ended)
    return ended


@shared_task
def session_upstream_end(session_pk: int) -> bool:
    """Retry terminating an ended session's runtime session at bitHuman (the minute sweep
    retries again if this one fails too)."""
    return upstream.upstream_end_retry(session_pk=session_pk)


@shared_task
def sessions_upstream_end_sweep() -> int:
    """Beat, every minute: retry terminates bitHuman has not confirmed."""
    return upstream.upstream_ends_sweep()


@shared_task
def sessions_link_pending() -> int:
    """Beat, every few seconds: link live sessions to the runtime sessions bitHuman lists."""
    return upstream.pending_sessions_link()


@shared_task
def sessions_transcripts_pull() -> int:
    """Beat, every few seconds: pull visitor and avatar lines of linked sessions (live ones
    every SESSION_TRANSCRIPT_SECONDS, ended ones once), within the accounts' Read budgets."""
    return transcripts.transcripts_pull_due()


@shared_task
def session_transcript_final(session_pk: int) -> int | None:
    """The pull after a session ended (the beat retries it if this one cannot)."""
    return transcripts.final_pull(session_pk=session_pk)
