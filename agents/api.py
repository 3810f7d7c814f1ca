"""Agents over REST: the same services and pre-flight checks as the pages."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import File, Form, Query, Router
from ninja.errors import ValidationError as NinjaValidationError
from ninja.files import UploadedFile as NinjaUploadedFile
from pydantic import ValidationError as PydanticValidationError

from agents import imports, media, model_adds, retries, selectors, services
from agents.models import Agent
from agents.payloads import AGENT_OUT_COLUMNS, agent_out, agent_out_row
from agents.preflight import AUDIO, IMAGE, MediaSource, preflight_run, stored_name
from agents.schemas import (
    AgentFormIn,
    AgentHistory,
    AgentImportIn,
    AgentImportOut,
    AgentIn,
    AgentList,
    AgentListQuery,
    AgentOut,
    AgentPatch,
    AgentRetryIn,
    ImportableList,
    ModelAddIn,
    ModelAddOut,
)
from portal import idempotency
from portal.apisupport import (
    ApiError,
    ListQuery,
    actor_for,
    api_error_for,
    error_response,
    page_bounds,
    scope_require,
    trusted_response,
)
from portal.errors import ApplicationError
from portal.models import ApiKey, ApiScope

router = Router(tags=["agents"])


def _agent_get(request: HttpRequest, agent_id: str) -> Agent:
    """The key's organization's agent, or NotFound (404) for a foreign, unknown or bad id."""
    return selectors.agent_get(org=request.organization, public_id=agent_id)  # type: ignore[attr-defined]


def _media(kind: str, url: str | None, data: str | None) -> MediaSource:
    if url and data:
        raise ApiError(
            422,
            "validation_error",
            f"Give {kind}_url or {kind}_base64, not both.",
            details={"fields": {f"{kind}_base64": ["Give a link or the file, not both."]}},
        )
    if data:
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(
                422,
                "validation_error",
                f"{kind}_base64 is not valid base64.",
                details={"fields": {f"{kind}_base64": ["Not valid base64."]}},
            ) from None
        return MediaSource(upload=SimpleUploadedFile(f"{kind}.bin", raw))
    return MediaSource(url=url or "")


def _create(request: HttpRequest, payload: AgentIn) -> tuple[int, dict[str, Any]]:
    image = _media("image", payload.image_url, payload.image_base64)
    audio = _media("audio", payload.audio_url, payload.audio_base64)
    return _create_with(request, payload, image=image, audio=audio, file_suffix="_base64")


def _create_with(
    request: HttpRequest,
    payload: AgentIn | AgentFormIn,
    *,
    image: MediaSource,
    audio: MediaSource,
    file_suffix: str,
) -> tuple[int, dict[str, Any]]:
    """Pre-flight, upload to bitHuman, create: errors name the field that holds the medium
    (`image_base64` / `image` for a file, `image_url` for a link)."""
    actor = actor_for(scope_require(request, ApiScope.AGENTS_WRITE))  # checked first by the op

    def field_of(kind: str, source: MediaSource) -> str:
        return f"{kind}{file_suffix}" if source.upload is not None else f"{kind}_url"

    report = preflight_run(prompt=payload.prompt, image=image, audio=audio)
    if not report.ok:
        fields: dict[str, list[str]] = {}
        for check in report.failures:
            name = {"prompt": "prompt"}.get(check.field) or field_of(
                check.field, image if check.field == "image" else audio
            )
            fields.setdefault(name, []).append(check.message)
        raise ApiError(
            422, "validation_error", "Pre-flight checks failed.", details={"fields": fields}
        )
    for source, kind in ((image, IMAGE), (audio, AUDIO)):
        if source.upload is not None:  # stored (and sent) under its content's extension
            source.upload.name = stored_name(kind=kind, upload=source.upload)
    # Before the agent exists: bitHuman refuses a bad file here, unbilled (agents.media).
    uploaded = media.media_uploads_run(
        org=actor.organization,
        image=image,
        audio=audio,
        field_for=lambda kind, source: field_of(kind.field, source),
    )
    agent = services.agent_create(
        actor=actor,
        name=payload.name,
        system_prompt=payload.prompt,
        model=payload.model,
        aspect_ratio=payload.aspect_ratio,
        framing=payload.framing,
        transparency=payload.transparency,
        image=image,
        audio=audio,
        image_file_url=uploaded.image_file_url,
        audio_file_url=uploaded.audio_file_url,
    )
    return 202, json.loads(AgentOut.model_validate(agent_out(agent)).model_dump_json())


def _keep_client_errors(error: BaseException) -> tuple[int, Any] | None:
    """A client error is the answer for this Idempotency-Key; outages and 429s are not kept."""
    if isinstance(error, ApplicationError):
        error = api_error_for(error)
    if isinstance(error, ApiError) and error.status < 500 and error.status != 429:
        body = {"error": {"code": error.code, "message": error.message, "details": error.details}}
        return error.status, body
    return None


@router.post(
    "",
    response={202: AgentOut},
    summary="Create an agent (generation starts at once)",
    description="Send `Idempotency-Key` to make retries safe: the same key and body within "
    "24 h replays the first answer with `Idempotency-Replayed: true`.",
)
def agent_create(request: HttpRequest, payload: AgentIn) -> HttpResponse:
    api_key = scope_require(request, ApiScope.AGENTS_WRITE)  # before any replay
    return _idempotently(
        request, api_key=api_key, body=request.body, run=lambda: _create(request, payload)
    )


def _idempotently(
    request: HttpRequest,
    *,
    api_key: ApiKey,
    body: bytes | Callable[[], bytes],
    run: Callable[[], tuple[int, dict[str, Any]]],
) -> HttpResponse:
    """Run a create once per `Idempotency-Key` (when the request sends one): the same key and
    body (`body`, or what it returns: called only when there is a key) replay the first answer."""
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        status, answer = run()
        return JsonResponse(answer, status=status)
    if len(key) > 255:
        raise ApiError(422, "validation_error", "Idempotency-Key is longer than 255 characters.")
    fingerprint = idempotency.request_fingerprint(
        method="POST", path=request.path, body=body if isinstance(body, bytes) else body()
    )
    try:
        outcome = idempotency.idempotent_run(
            api_key=api_key, key=key, fingerprint=fingerprint, run=run, keep=_keep_client_errors
        )
    except idempotency.IdempotencyConflict as conflict:
        return error_response(409, conflict.code, conflict.message)
    response = JsonResponse(outcome.body, status=outcome.status)
    if outcome.replayed:
        response["Idempotency-Replayed"] = "true"
    return response


def _multipart_body(payload: AgentFormIn, files: dict[str, NinjaUploadedFile | None]) -> bytes:
    """What identifies a multipart create (its boundary differs from one send to the next):
    the form fields and each file's digest."""
    digests = {}
    for name, upload in files.items():
        if upload is None:
            continue
        digest = hashlib.sha256()
        for chunk in upload.chunks():
            digest.update(chunk)
        upload.seek(0)
        digests[name] = digest.hexdigest()
    fields = payload.model_dump(mode="json")
    return json.dumps({"fields": fields, "files": digests}, sort_keys=True).encode()


@router.post(
    "/multipart",
    response={202: AgentOut},
    summary="Create an agent, with media as files (multipart/form-data)",
    description="The same as POST /agents with the face image and voice sample as the files "
    "`image` and `audio` (or links in `image_url`, `audio_url`) and the other fields as form "
    "fields. An error names the field: `image`, `image_url`, ... `Idempotency-Key` works as on "
    "POST /agents (the same fields and files replay the first answer).",
)
def agent_create_multipart(
    request: HttpRequest,
    payload: Form[AgentFormIn],
    image: NinjaUploadedFile | None = File(None),  # noqa: B008 (ninja's parameter marker)
    audio: NinjaUploadedFile | None = File(None),  # noqa: B008
) -> HttpResponse:
    api_key = scope_require(request, ApiScope.AGENTS_WRITE)
    for kind, upload, url in (
        ("image", image, payload.image_url),
        ("audio", audio, payload.audio_url),
    ):
        if upload is not None and url:
            raise ApiError(
                422,
                "validation_error",
                f"Give {kind} or {kind}_url, not both.",
                details={"fields": {kind: ["Give a link or the file, not both."]}},
            )
    return _idempotently(
        request,
        api_key=api_key,
        body=lambda: _multipart_body(payload, {"image": image, "audio": audio}),
        run=lambda: _create_with(
            request,
            payload,
            image=MediaSource(upload=image, url=payload.image_url or ""),
            audio=MediaSource(upload=audio, url=payload.audio_url or ""),
            file_suffix="",
        ),
    )


@router.get("", response=AgentList, summary="List agents")
def agent_list(request: HttpRequest, filters: Query[AgentListQuery]) -> HttpResponse:
    scope_require(request, ApiScope.AGENTS_READ)
    start, end = page_bounds(ListQuery(limit=filters.limit, offset=filters.offset))
    # The same selector as the agents page: the API and the page cannot disagree.
    agents = selectors.agent_list(
        org=request.organization,  # type: ignore[attr-defined]
        query=filters.search or "",
        status=filters.status or "",
    )
    items = [agent_out_row(row) for row in agents.values(*AGENT_OUT_COLUMNS)[start:end]]
    count = selectors.agent_list_count(
        org=request.organization,  # type: ignore[attr-defined]
        agents=agents,
        filters=f"{filters.status or ''}\n{filters.search or ''}",
        offset=start,
        limit=end - start,
        page_size=len(items),
    )
    return trusted_response(request, {"items": items, "count": count})


@router.get(
    "/importable",
    response=ImportableList,
    summary="Agents of the bitHuman account not in the organization yet",
    description="Lists the organization's bitHuman account's agents (newest first, at most "
    "500) that can be brought in with POST /agents/import. Each page costs one read of the "
    "account's bitHuman Read budget.",
)
def agent_importable(request: HttpRequest) -> dict[str, Any]:
    actor = actor_for(scope_require(request, ApiScope.AGENTS_WRITE))
    listing = imports.importable_list(actor=actor)
    return {
        "items": [
            {
                "code": item.code,
                "name": item.name,
                "model": item.model,
                "status": item.status,
                "created_at": item.created_at,
                "in_another_organization": item.elsewhere,
            }
            for item in listing.agents
        ],
        "truncated": listing.truncated,
    }


@router.post(
    "/import",
    response={201: AgentImportOut},
    summary="Import agents from the bitHuman account",
    description="Brings agents of the organization's bitHuman account (made in bitHuman's "
    "dashboard or by another client) into the organization: each keeps its code, its prompt "
    "becomes revision 1 of its prompt history, and one still generating is followed like the "
    "others. One bitHuman agent belongs to at most one organization. All or none: a refusal "
    "(422 `import_refused`) lists in `details.codes` each code that cannot be imported and why.",
)
def agent_import(request: HttpRequest, payload: AgentImportIn) -> tuple[int, dict[str, Any]]:
    actor = actor_for(scope_require(request, ApiScope.AGENTS_WRITE))
    try:
        imported = imports.agents_import(actor=actor, codes=list(payload.codes))
    except imports.ImportRefused as refused:
        raise ApiError(
            422, refused.code, refused.message, details={"codes": refused.problems}
        ) from None
    return 201, {"items": [agent_out(agent) for agent in imported]}


@router.get("/{agent_id}", response=AgentOut, summary="An agent")
def agent_get(request: HttpRequest, agent_id: str) -> HttpResponse:
    scope_require(request, ApiScope.AGENTS_READ)
    return trusted_response(request, agent_out(_agent_get(request, agent_id)))


@router.patch("/{agent_id}", response=AgentOut, summary="Change the system prompt")
def agent_update(request: HttpRequest, agent_id: str, payload: AgentPatch) -> dict[str, Any]:
    actor = actor_for(scope_require(request, ApiScope.AGENTS_WRITE))
    agent = _agent_get(request, agent_id)
    services.agent_prompt_update(actor=actor, agent=agent, text=payload.system_prompt)
    agent.refresh_from_db()
    return agent_out(agent)


@router.delete("/{agent_id}", response={204: None}, summary="Delete an agent")
def agent_delete(request: HttpRequest, agent_id: str) -> tuple[int, None]:
    actor = actor_for(scope_require(request, ApiScope.AGENTS_WRITE))
    agent = _agent_get(request, agent_id)
    services.agent_archive(actor=actor, agent=agent)
    return 204, None


def _retry_body(request: HttpRequest) -> AgentRetryIn:
    """The optional body (a retry with the same inputs may send none, as before replacements
    existed), validated like a declared one."""
    raw = request.body.strip()
    if not raw or (request.content_type != "application/json" and not raw.startswith(b"{")):
        return AgentRetryIn()  # nothing, or an empty form: the same inputs
    try:
        return AgentRetryIn.model_validate_json(request.body)
    except PydanticValidationError as error:
        raise NinjaValidationError(
            [dict(item) for item in error.errors(include_url=False)]
        ) from None


@router.post(
    "/{agent_id}/retry",
    response={202: AgentOut},
    summary="Retry a failed agent",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": AgentRetryIn.model_json_schema()}},
        }
    },
    description="Starts a new generation attempt of the same agent (same id; `attempt` counts "
    "up, the failed attempt stays in its history). Optionally replace the face, the voice or "
    "the prompt first, checked like creation's inputs; omitted fields keep what the failed "
    "attempt used.",
)
def agent_retry(request: HttpRequest, agent_id: str) -> tuple[int, dict[str, Any]]:
    actor = actor_for(scope_require(request, ApiScope.AGENTS_WRITE))
    agent = _agent_get(request, agent_id)
    payload = _retry_body(request)
    image = _media("image", payload.image_url, payload.image_base64)
    audio = _media("audio", payload.audio_url, payload.audio_base64)
    report = retries.retry_preflight(agent=agent, prompt=payload.prompt, image=image, audio=audio)
    if not report.ok:
        fields: dict[str, list[str]] = {}
        for check in report.failures:
            name = (
                "prompt"
                if check.field == "prompt"
                else (
                    f"{check.field}_base64"
                    if (image if check.field == "image" else audio).upload
                    else f"{check.field}_url"
                )
            )
            fields.setdefault(name, []).append(check.message)
        raise ApiError(
            422, "validation_error", "Pre-flight checks failed.", details={"fields": fields}
        )
    retried = retries.agent_retry(
        actor=actor, agent=agent, prompt=payload.prompt, image=image, audio=audio
    )
    retried.refresh_from_db()  # the submission may have run already
    return 202, agent_out(retried)


@router.post(
    "/{agent_id}/give-up",
    response=AgentOut,
    summary="Give up on an overdue agent",
    description="Fails an overdue agent for good. " + services.GIVE_UP_CONSEQUENCES,
)
def agent_give_up(request: HttpRequest, agent_id: str) -> dict[str, Any]:
    actor = actor_for(scope_require(request, ApiScope.AGENTS_WRITE))
    agent = _agent_get(request, agent_id)
    return agent_out(services.agent_give_up(actor=actor, agent=agent))


@router.post(
    "/{agent_id}/models",
    response=ModelAddOut,
    summary="Add a model to a ready agent",
    description="bitHuman's POST /v1/agent/{code}/models: billed at the model's creation rate "
    "(expression-1 free); asking again for a model it has or is adding charges nothing.",
)
def agent_model_add(request: HttpRequest, agent_id: str, payload: ModelAddIn) -> dict[str, Any]:
    actor = actor_for(scope_require(request, ApiScope.AGENTS_WRITE))
    agent = _agent_get(request, agent_id)
    added = model_adds.agent_model_add(actor=actor, agent=agent, model=payload.model)
    return {
        "model": payload.model,
        "status": "ready" if added.status == "ready" else "processing",
        "credits": added.credits or 0,
        "supported_models": list(agent.supported_models),
        "models_adding": [entry["model"] for entry in agent.models_adding],
    }


@router.get("/{agent_id}/history", response=AgentHistory, summary="Status history")
def agent_history(request: HttpRequest, agent_id: str) -> dict[str, Any]:
    scope_require(request, ApiScope.AGENTS_READ)
    agent = _agent_get(request, agent_id)
    return {
        "items": [
            {
                "from_status": change.from_status,
                "to_status": change.to_status,
                "progress": change.progress,
                "step": change.current_step,
                "source": change.source,
                "at": change.created_at,
            }
            for change in agent.status_changes.all()
        ]
    }
