"""Retry is the same agent: a failed generation cannot be resumed at bitHuman, so a retry starts
a new generation (a new bitHuman agent) for the same row, as its next attempt.

- The row keeps its id, name, history and prompt history; `attempt` counts up, and the attempt
  that failed keeps its code and outcome as a GenerationAttempt (the page lists them).
- Before retrying, the face, the voice or the prompt may be replaced (the failure message often
  says which): checked like creation's inputs (agents.preflight) by the page and the API.
- Each attempt sends its own Idempotency-Key (`services.submission_key`): the first attempt's
  key would replay the failed agent.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from activity import services as activity_services
from agents import services, usage
from agents.models import (
    Agent,
    AgentStatus,
    AgentStatusChange,
    GenerationAttempt,
    PromptRevision,
    StatusSource,
)
from agents.preflight import (
    AUDIO,
    IMAGE,
    MediaSource,
    PreflightReport,
    UrlFetcher,
    media_checks,
    prompt_check,
    stored_name,
)
from portal.errors import ApplicationError, Conflict
from portal.tenancy import Actor, Role, organization_active_require, role_require

CHANGE_WORDS = {"face": "a new face", "voice": "a new voice", "prompt": "a new prompt"}


def has_face(agent: Agent) -> bool:
    return bool(agent.image) or bool(agent.image_url)


def retry_preflight(
    *, agent: Agent, prompt: str | None, image: MediaSource, audio: MediaSource
) -> PreflightReport:
    """Creation's checks for what a retry replaces (what it keeps was checked at creation)."""
    effective_prompt = agent.system_prompt if prompt is None else prompt
    fetcher = UrlFetcher()
    checks = [
        prompt_check(prompt=effective_prompt, has_image=image.is_given or has_face(agent)),
        *media_checks(kind=IMAGE, source=image, fetcher=fetcher),
        *media_checks(kind=AUDIO, source=audio, fetcher=fetcher),
    ]
    return PreflightReport(checks=tuple(checks))


def _changes(
    *, agent: Agent, prompt: str | None, image: MediaSource, audio: MediaSource
) -> list[str]:
    changes = []
    if image.is_given:
        changes.append("face")
    if audio.is_given:
        changes.append("voice")
    if prompt is not None and prompt.strip() != agent.system_prompt:
        changes.append("prompt")
    return changes


def agent_retry(
    *,
    actor: Actor,
    agent: Agent,
    prompt: str | None = None,
    image: MediaSource | None = None,
    audio: MediaSource | None = None,
) -> Agent:
    """Start the failed agent's next attempt, with its face, voice or prompt replaced if given
    (checked by the caller with `retry_preflight`). Returns the same agent, now submitting."""
    role_require(actor, Role.MEMBER, "retry agents")
    organization_active_require(actor.organization)
    if agent.status == AgentStatus.FAILED:  # a retry is a new, billed generation
        usage.generation_affordable_require(org=agent.organization, model=agent.model)
    image = image or MediaSource()
    audio = audio or MediaSource()
    if prompt is not None and not prompt.strip() and not (image.is_given or has_face(agent)):
        raise ApplicationError(
            "Describe the agent in a prompt, or add a face image.", field="system_prompt"
        )
    user = actor.user if actor.user_id else None
    now = timezone.now()
    with transaction.atomic():
        locked = Agent.objects.select_for_update().filter(pk=agent.pk).first()
        if locked is None or locked.status != AgentStatus.FAILED:
            raise Conflict("Only a failed agent can be retried.", code="agent_not_failed")
        changes = _changes(agent=locked, prompt=prompt, image=image, audio=audio)
        GenerationAttempt.objects.update_or_create(
            agent=locked,
            number=locked.attempt,
            defaults={
                "code": locked.code,
                "status": locked.status,
                "error_message": locked.error_message,
                "error_request_id": locked.error_request_id,
                "ended_at": locked.failed_at or now,
            },
            create_defaults={
                "code": locked.code,
                "status": locked.status,
                "error_message": locked.error_message,
                "error_request_id": locked.error_request_id,
                "started_at": locked.submitted_at or locked.created_at,
                "ended_at": locked.failed_at or now,
                "started_by": locked.created_by,
            },
        )
        number = locked.attempt + 1
        GenerationAttempt.objects.create(
            agent=locked, number=number, changes=changes, started_by=user, started_at=now
        )
        if image.is_given:
            _medium_replace(locked, "image", image)
        if audio.is_given:
            _medium_replace(locked, "audio", audio)
        if "prompt" in changes and prompt is not None:
            locked.system_prompt = prompt.strip()
            PromptRevision.objects.create(
                agent=locked, text=locked.system_prompt, author=user, accepted=True
            )
        previous = locked.status
        for name, value in {
            "status": AgentStatus.SUBMITTING,
            "code": "",
            "progress": 0.0,
            "current_step": "",
            "progress_message": "",
            "error_message": "",
            "error_request_id": "",
            "supported_models": [],
            "submitted_at": None,
            "ready_at": None,
            "failed_at": None,
            "next_poll_at": None,
            "lease_until": None,
            "consecutive_errors": 0,
            "submit_attempts": 0,
            "queued_until": None,
            "upstream_deleted_at": None,
            "attempt": number,
            "updated_at": now,
        }.items():
            setattr(locked, name, value)
        locked.save()
        words = ", ".join(CHANGE_WORDS[change] for change in changes) or "the same inputs"
        AgentStatusChange.objects.create(
            agent=locked,
            from_status=previous,
            to_status=locked.status,
            message=f"Retry: attempt {number}, with {words}",
            source=StatusSource.RETRY,
            attempt=number,
        )
        services._submit_enqueue(locked)
        activity_services.audit_record(
            org=locked.organization,
            actor=actor,
            action="agent.retried",
            target=locked,
            details={"attempt": number, "changes": changes},
        )
    return locked


def _medium_replace(agent: Agent, kind: str, source: MediaSource) -> None:
    """Put a new face (`image`) or voice (`audio`) on the row: a file, or a link. bitHuman's URL
    of the old one is forgotten, so the retry's submission uploads the new one."""
    file_field = agent.image if kind == "image" else agent.audio
    setattr(agent, f"{kind}_file_url", "")
    if source.upload is not None:
        source.upload.name = stored_name(
            kind=IMAGE if kind == "image" else AUDIO, upload=source.upload
        )
        file_field.save(source.upload.name or kind, source.upload, save=False)
        setattr(agent, f"{kind}_url", "")
    else:
        setattr(agent, kind, "")
        setattr(agent, f"{kind}_url", source.url.strip())
