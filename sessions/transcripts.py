"""Visitor and avatar lines from bitHuman's transcript of a session's room
(`GET /v2/{user_id}/runtime-sessions/{id}/messages`, api/runtime-sessions.md), pulled into the
session's timeline.

- When: a linked, live session every TRANSCRIPT_PULL_SECONDS (the beat, and the console's poll
  at most as often), and once after the session ended (then no more). Every pull first takes a
  token from the account's Read budget (agents.readbudget, shared with the agent poller) and
  respects a Retry-After: a pull with no budget left simply waits for the next turn.
- Lines become SessionEvents (`visitor`, `avatar`) at bitHuman's timestamps, so the timeline,
  the exports and the API merge them by time with the operator's lines. Each line's identity
  (time, role, text, repeat number) is kept in `upstream_key`, unique per session: pulling the
  same transcript again adds nothing.
- Every new line is sent as a `session.message` webhook (sessions.events).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agents import readbudget
from organizations import connections
from portal.bithuman import errors as bh_errors
from portal.bithuman.types import TranscriptMessage
from sessions import events
from sessions.models import AgentSession, EventKind, SessionEvent, SessionStatus

logger = logging.getLogger(__name__)

ROLE_KINDS = {"user": EventKind.VISITOR, "assistant": EventKind.AVATAR}
# After the end: how long the final pull is retried (bitHuman may be unreachable a while).
FINAL_PULL_WITHIN = timedelta(days=1)
BATCH = 200


def pull_seconds() -> int:
    return max(2, int(getattr(settings, "SESSION_TRANSCRIPT_SECONDS", 15)))


def _line_keys(messages: Iterable[TranscriptMessage]) -> list[str]:
    """A stable identity per line: the same line pulled again has the same key; a line said
    twice at the same second keeps both (the repeat number differs)."""
    seen: Counter[tuple[str, str, str]] = Counter()
    keys = []
    for message in messages:
        stamp = message.timestamp.isoformat() if message.timestamp else ""
        triple = (stamp, message.role, message.message)
        seen[triple] += 1
        raw = "\x1f".join((*triple, str(seen[triple])))
        keys.append(hashlib.sha256(raw.encode()).hexdigest())
    return keys


def lines_store(*, session: AgentSession, messages: Iterable[TranscriptMessage]) -> int:
    """Add the lines the timeline does not have yet; send each new one as a webhook. Returns
    how many were added. Lines of roles other than user / assistant are left out."""
    messages = list(messages)
    keyed = [
        (key, message)
        for key, message in zip(_line_keys(messages), messages, strict=True)
        if message.role in ROLE_KINDS and message.message.strip()
    ]
    if not keyed:
        return 0
    with transaction.atomic():
        # One pull at a time per session: the beat and a page may pull together.
        AgentSession.objects.select_for_update().filter(pk=session.pk).first()
        known = set(
            SessionEvent.objects.filter(
                session=session, upstream_key__in=[key for key, _ in keyed]
            ).values_list("upstream_key", flat=True)
        )
        now = timezone.now()
        added = [
            SessionEvent.objects.create(
                session=session,
                kind=ROLE_KINDS[message.role],
                text=message.message.replace("\x00", ""),
                created_at=message.timestamp or now,
                upstream_key=key,
            )
            for key, message in keyed
            if key not in known
        ]
        for event in added:
            events.session_transcript_line_record(session=session, event=event)
    return len(added)


def transcript_pull(session: AgentSession, *, final: bool = False) -> int | None:
    """Pull the session's transcript now and store new lines; None when nothing was asked
    (not linked, no budget, another mode) or bitHuman failed. `final`: the pull after the end
    (marks the transcript complete when it succeeds)."""
    if not session.is_linked:
        if final:  # never linked: bitHuman has no transcript of it for us
            AgentSession.objects.filter(pk=session.pk).update(transcript_final_at=timezone.now())
        return None
    connection = connections.connection_get(org=session.organization)
    if connection.is_live == session.sandbox:  # the organization switched modes since
        if final:
            AgentSession.objects.filter(pk=session.pk).update(transcript_final_at=timezone.now())
        return None
    key = readbudget.account_of(connection)
    if not readbudget.read_take(key=key):
        return None
    try:
        with connections.client_for(connection=connection, timeout=5, max_retries=0) as client:
            user_id = connections.connection_user_id(connection=connection, client=client)
            transcript = client.runtime_session_messages(
                user_id=user_id, session_id=session.upstream_session_id
            )
    except bh_errors.RateLimitedError as error:
        readbudget.rate_limited_record(key=key, error=error, default=pull_seconds())
        return None
    except bh_errors.NotFoundError:
        # bitHuman no longer has the session: there is nothing more to pull.
        AgentSession.objects.filter(pk=session.pk).update(
            transcript_pulled_at=timezone.now(), transcript_final_at=timezone.now()
        )
        return 0
    except bh_errors.BithumanError as error:
        logger.info("Session %s: transcript not read: %s", session.public_id, error)
        return None
    added = lines_store(session=session, messages=transcript.messages)
    now = timezone.now()
    fields = {"transcript_pulled_at": now}
    if final or (transcript.live is False and not session.is_live):
        fields["transcript_final_at"] = now
    AgentSession.objects.filter(pk=session.pk).update(**fields)
    for name, value in fields.items():
        setattr(session, name, value)
    return added


def transcript_pull_throttled(session: AgentSession) -> int | None:
    """A page's pull (the console's poll, an export): at most every TRANSCRIPT_PULL_SECONDS per
    session, whoever asks; a session whose final pull is done is never asked about again."""
    if session.transcript_final_at is not None or not session.is_linked:
        return None
    if not cache.add(f"sessions:transcript-pull:{session.pk}", 1, pull_seconds()):
        return None
    return transcript_pull(session, final=not session.is_live)


def transcripts_pull_due() -> int:
    """Beat: pull the transcripts of live linked sessions not pulled for TRANSCRIPT_PULL_SECONDS,
    and the final one of sessions that ended (within FINAL_PULL_WITHIN). Returns lines added."""
    now = timezone.now()
    stale = now - timedelta(seconds=pull_seconds())
    due = Q(transcript_pulled_at__isnull=True) | Q(transcript_pulled_at__lt=stale)
    live = AgentSession.objects.live().exclude(upstream_session_id="").filter(due)
    ended = (
        AgentSession.objects.filter(status=SessionStatus.ENDED, transcript_final_at__isnull=True)
        .exclude(upstream_session_id="")
        .filter(ended_at__gte=now - FINAL_PULL_WITHIN)
        .filter(due)
    )
    added = 0
    for query, final in ((ended, True), (live, False)):
        picked = query.select_related("organization").order_by("transcript_pulled_at")[:BATCH]
        for session in picked:
            if cache.add(f"sessions:transcript-pull:{session.pk}", 1, pull_seconds()):
                added += transcript_pull(session, final=final) or 0
    return added


def final_pull_schedule(session: AgentSession) -> None:
    """After the end: the last pull, once the terminate went out (a Celery task after commit;
    the beat covers a lost task)."""
    pk = session.pk

    def send() -> None:
        from sessions import tasks  # the task module imports this one

        tasks.session_transcript_final.apply_async(args=[pk], countdown=2)

    transaction.on_commit(send)


def final_pull(*, session_pk: int) -> int | None:
    session = (
        AgentSession.objects.filter(pk=session_pk, transcript_final_at__isnull=True)
        .select_related("organization")
        .first()
    )
    if session is None or session.is_live:
        return None
    return transcript_pull(session, final=True)
