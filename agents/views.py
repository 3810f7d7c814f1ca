"""Agent pages and their HTMX fragments. Views: resolve (org_view), act (services), respond.

One view serves a page and its fragment: with `request.htmx` it renders the inline partial
(`"agents/detail.html#progress"`), which carries its polling trigger only while the agent is in
flight, so polling stops by itself at a terminal state.
"""

from __future__ import annotations

import mimetypes
from datetime import datetime
from pathlib import PurePosixPath
from uuid import UUID, uuid5

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from agents import (
    media,
    model_adds,
    queue,
    retries,
    selectors,
    services,
    snippets,
    tasks,
    uploads,
    usage,
    webhooks,
)
from agents.forms import AgentDeleteForm, AgentForm, PromptForm, RetryForm
from agents.models import Agent, AgentModel, AgentStatus, PendingUpload, PromptRevision
from agents.preflight import (
    AUDIO,
    IMAGE,
    MediaKind,
    MediaSource,
    PreflightReport,
    preflight_run,
    stored_name,
)
from organizations import connections
from portal.confirm import confirm_page, confirmed
from portal.errors import ApplicationError
from portal.forms import error_show
from portal.models import Membership
from portal.tenancy import Role, org_view, role_at_least

PAGE_SIZE = 25


def _agent_get(membership: Membership, agent_id: UUID) -> Agent:
    return selectors.agent_get(org=membership.organization, public_id=agent_id)


def _filter_value(request: HttpRequest, name: str) -> str:
    # PostgreSQL text cannot hold NUL: a filter carrying one would be a server error.
    return request.GET.get(name, "").replace("\x00", "")


@org_view({"GET": Role.VIEWER})
def agent_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    org = membership.organization
    query = _filter_value(request, "q").strip()
    status = _filter_value(request, "status")
    model = _filter_value(request, "model")
    agents = selectors.agent_list(org=org, query=query, status=status, model=model)
    page = Paginator(agents, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    for row in rows:
        row.face_src = _media_src(row, "face")  # type: ignore[attr-defined]
    context = {
        "page": page,
        "agents": rows,
        "any_in_flight": any(not a.is_terminal for a in rows),
        "query": query,
        "status": status,
        "model": model,
        "statuses": [("in_flight", "In progress"), ("ready", "Ready"), ("failed", "Failed")],
        "models": AgentModel.choices,
        "can_create": role_at_least(membership.role, Role.MEMBER),
        "can_import": role_at_least(membership.role, Role.ADMIN),
        "filtered": bool(query or status or model),
    }
    template = "agents/list.html#rows" if getattr(request, "htmx", False) else "agents/list.html"
    return render(request, template, context)


def _new_page(
    request: HttpRequest,
    membership: Membership,
    form: AgentForm,
    report: PreflightReport | None = None,
    status: int = 200,
    kept: dict[str, PendingUpload] | None = None,
) -> HttpResponse:
    # The balance beside the models' prices; reading it here also gives the pre-check before
    # the generation a recent balance (agents.usage.generation_affordable_require).
    balance = usage.credit_summary(org=membership.organization)
    context = {"form": form, "report": report, "kept": kept or {}, "balance": balance}
    return render(request, "agents/new.html", context, status=status)


def _kept_get(request: HttpRequest, membership: Membership) -> dict[str, PendingUpload]:
    """The files this user chose on an earlier, failed submission of the form."""
    found = {}
    for kind in uploads.KINDS:
        pending = uploads.pending_upload_get(
            org=membership.organization,
            user=request.user,  # type: ignore[arg-type]
            kind=kind,
            public_id=request.POST.get(f"kept_{kind}_id"),
        )
        if pending is not None:
            found[kind] = pending
    return found


def _kept_after_failure(
    request: HttpRequest,
    membership: Membership,
    form: AgentForm | RetryForm,
    kept: dict[str, PendingUpload],
    failed: set[str],
) -> dict[str, PendingUpload]:
    """Keep what the user chose this time (or before) unless its own check failed or a link
    replaces it."""
    result = {}
    for kind, media_kind in (("image", IMAGE), ("audio", AUDIO)):
        upload = request.FILES.get(kind)
        if kind in failed or request.POST.get(f"{kind}_url", "").strip():
            continue
        if upload is not None and not form.has_error(kind):
            result[kind] = uploads.pending_upload_keep(
                org=membership.organization,
                user=request.user,  # type: ignore[arg-type]
                kind=kind,
                upload=upload,
                stored_name=stored_name(kind=media_kind, upload=upload),
            )
        elif upload is None and kind in kept:
            result[kind] = kept[kind]
    return result


@org_view({"GET": Role.MEMBER, "POST": Role.MEMBER})
def agent_new(request: HttpRequest, membership: Membership) -> HttpResponse:
    org = membership.organization
    choices = selectors.model_choices(org=org)
    if request.method != "POST":
        return _new_page(request, membership, AgentForm(model_choices=choices))
    form = AgentForm(request.POST, request.FILES, model_choices=choices)
    kept = _kept_get(request, membership)
    if not form.is_valid():
        kept = _kept_after_failure(request, membership, form, kept, failed=set())
        return _new_page(request, membership, form, status=400, kept=kept)
    data = form.cleaned_data
    used = [kept[k] for k in kept if not data[k] and not data[f"{k}_url"]]
    for pending in used:
        data[pending.kind] = uploads.pending_upload_file(pending)
    image = MediaSource(upload=data["image"], url=data["image_url"] or "")
    audio = MediaSource(upload=data["audio"], url=data["audio_url"] or "")
    report = preflight_run(prompt=data["system_prompt"], image=image, audio=audio)
    if not report.ok:
        for check in report.failures:
            field = {"image": "image", "audio": "audio", "prompt": "system_prompt"}.get(check.field)
            if check.field == "image" and data["image_url"]:
                field = "image_url"
            if check.field == "audio" and data["audio_url"]:
                field = "audio_url"
            form.add_error(field if field in form.fields else None, check.message)
        failed = {check.field for check in report.failures}
        kept = _kept_after_failure(request, membership, form, kept, failed=failed)
        return _new_page(request, membership, form, report=report, status=400, kept=kept)
    for source, kind in ((image, IMAGE), (audio, AUDIO)):
        if source.upload is not None:
            source.upload.name = stored_name(kind=kind, upload=source.upload)
    try:
        # Before the agent exists: bitHuman refuses a bad file here, unbilled (agents.media).
        uploaded = media.media_uploads_run(
            org=org, image=image, audio=audio, field_for=_media_field
        )
        agent = services.agent_create(
            actor=membership,
            name=data["name"],
            system_prompt=data["system_prompt"],
            model=data["model"],
            aspect_ratio=data["aspect_ratio"],
            framing=data["framing"],
            transparency=data["transparency"],
            image=image,
            audio=audio,
            # The form's id, namespaced by organization: a resubmitted form still finds its
            # agent, and another organization's agent id pasted into the form names nothing
            # (the same answer as an unused id, never "already used").
            public_id=uuid5(data["submission_id"], str(org.pk)),
            image_file_url=uploaded.image_file_url,
            audio_file_url=uploaded.audio_file_url,
        )
    except ApplicationError as error:
        error_show(request, error, form=form)
        # A file bitHuman refused is not kept (the customer must choose another).
        failed = {error.field.removesuffix("_url")} if error.field else set()
        kept = _kept_after_failure(request, membership, form, kept, failed=failed)
        return _new_page(request, membership, form, report=report, status=400, kept=kept)
    uploads.pending_uploads_discard(list(kept.values()))  # used, or replaced by a new choice
    for check in report.warnings:
        messages.warning(request, check.message)
    messages.success(request, f"Generating {agent.name}. You can follow its progress here.")
    target = reverse("agent_detail", args=[org.slug, agent.public_id])
    if request.headers.get("X-Upload-Progress"):
        # The form's upload script follows this itself (a redirect followed inside the request
        # would use up the message above).
        response = HttpResponse(status=200)
        response["X-Redirect"] = target
        return response
    return redirect(target)


def _media_field(kind: MediaKind, source: MediaSource) -> str:
    """The form field holding a medium: its file input, or its link's."""
    return kind.field if source.upload is not None else f"{kind.field}_url"


def _media_src(agent: Agent, kind: str) -> str:
    """An uploaded file's URL: the members-only media view (`agent_media`), never MEDIA_URL."""
    field = agent.image if kind == "face" else agent.audio
    if not field:
        return ""
    return reverse("agent_media", args=[agent.organization.slug, agent.public_id, kind])


def _detail_context(membership: Membership, agent: Agent) -> dict[str, object]:
    context: dict[str, object] = {
        "agent": agent,
        "face_src": _media_src(agent, "face"),
        "voice_src": _media_src(agent, "voice"),
        "progress": selectors.agent_progress(agent=agent),
        "fix": selectors.failure_fix(agent=agent) if agent.is_failed else "",
        "fix_field": selectors.failure_field(agent=agent) if agent.is_failed else "",
        "queue_position": queue.queue_position(agent),
        "can_operate": role_at_least(membership.role, Role.MEMBER),
        "attempts": selectors.attempts_of(agent=agent),
    }
    if agent.is_ready:
        connection = connections.connection_get(org=agent.organization)
        context["snippets"] = snippets.agent_snippets(agent=agent, connection=connection)
        context["model_choices"] = model_adds.model_add_choices(agent=agent)
    return context


@org_view({"GET": Role.VIEWER})
def agent_detail(request: HttpRequest, membership: Membership, agent_id: UUID) -> HttpResponse:
    agent = _agent_get(membership, agent_id)
    context = _detail_context(membership, agent)
    if getattr(request, "htmx", False):
        return render(request, "agents/detail.html#progress", context)
    context |= {
        "prompt_form": PromptForm(initial={"system_prompt": agent.system_prompt}),
        "retry_form": RetryForm(initial={"system_prompt": agent.system_prompt}),
        "revisions": selectors.revision_history(agent=agent),
        "history": agent.status_changes.all(),
        "delete_form": AgentDeleteForm(),
    }
    return render(request, "agents/detail.html", context)


def _detail_with_errors(
    request: HttpRequest,
    membership: Membership,
    agent: Agent,
    *,
    prompt_form: PromptForm | None = None,
    delete_form: AgentDeleteForm | None = None,
    retry_form: RetryForm | None = None,
    kept: dict[str, PendingUpload] | None = None,
) -> HttpResponse:
    context = _detail_context(membership, agent) | {
        "kept": kept or {},
        "prompt_form": prompt_form or PromptForm(initial={"system_prompt": agent.system_prompt}),
        "retry_form": retry_form or RetryForm(initial={"system_prompt": agent.system_prompt}),
        "retry_open": retry_form is not None,
        "revisions": selectors.revision_history(agent=agent),
        "history": agent.status_changes.all(),
        "delete_form": delete_form or AgentDeleteForm(),
    }
    return render(request, "agents/detail.html", context, status=400)


@org_view({"POST": Role.MEMBER})
def agent_prompt(request: HttpRequest, membership: Membership, agent_id: UUID) -> HttpResponse:
    agent = _agent_get(membership, agent_id)
    form = PromptForm(request.POST)
    if form.is_valid():
        try:
            services.agent_prompt_update(
                actor=membership, agent=agent, text=form.cleaned_data["system_prompt"]
            )
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            messages.success(request, "Prompt saved and sent to bitHuman.")
            return redirect(
                "agent_detail", org_slug=membership.organization.slug, agent_id=agent_id
            )
    return _detail_with_errors(request, membership, agent, prompt_form=form)


@org_view({"POST": Role.MEMBER})
def agent_prompt_restore(
    request: HttpRequest, membership: Membership, agent_id: UUID, revision_id: int
) -> HttpResponse:
    agent = _agent_get(membership, agent_id)
    revision = get_object_or_404(PromptRevision.objects.filter(agent=agent), pk=revision_id)
    if not confirmed(request):
        return confirm_page(
            request,
            title=f"Restore this prompt of {agent.name}?",
            message="It replaces the current prompt and is sent to bitHuman at once; the current "
            "prompt stays in the history.",
            button="Restore prompt",
            cancel_url=reverse(
                "agent_detail", args=[membership.organization.slug, agent.public_id]
            ),
            danger=False,
        )
    try:
        services.agent_prompt_update(actor=membership, agent=agent, text=revision.text)
    except ApplicationError as error:
        error_show(request, error)
    else:
        messages.success(request, "The earlier prompt was restored and sent to bitHuman.")
    return redirect("agent_detail", org_slug=membership.organization.slug, agent_id=agent_id)


@org_view({"POST": Role.MEMBER})
def agent_delete(request: HttpRequest, membership: Membership, agent_id: UUID) -> HttpResponse:
    agent = _agent_get(membership, agent_id)
    form = AgentDeleteForm(request.POST)
    if form.is_valid() and form.cleaned_data["confirm"].strip() != agent.name:
        form.add_error("confirm", f"Type {agent.name} to confirm.")
    if form.is_valid():
        try:
            services.agent_archive(actor=membership, agent=agent)
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            messages.success(request, f"Deleted {agent.name}. Its history is kept.")
            return redirect("agent_list", org_slug=membership.organization.slug)
    return _detail_with_errors(request, membership, agent, delete_form=form)


@org_view({"POST": Role.MEMBER})
def agent_retry(request: HttpRequest, membership: Membership, agent_id: UUID) -> HttpResponse:
    """A failed agent's next attempt, in the same row: the face, the voice or the prompt may be
    replaced first (the retry form, checked like the new-agent form)."""
    agent = _agent_get(membership, agent_id)
    form = RetryForm(request.POST, request.FILES)
    kept = _kept_get(request, membership)  # files chosen on an earlier, refused try

    def refused(failed: set[str]) -> HttpResponse:
        """The page again with the errors, keeping every file whose own check passed."""
        still = _kept_after_failure(request, membership, form, kept, failed=failed)
        return _detail_with_errors(request, membership, agent, retry_form=form, kept=still)

    if not form.is_valid():
        return refused(set())
    data = form.cleaned_data
    for kind, pending in kept.items():
        if not data[kind] and not data[f"{kind}_url"]:
            data[kind] = uploads.pending_upload_file(pending)
    image = MediaSource(upload=data["image"], url=data["image_url"] or "")
    audio = MediaSource(upload=data["audio"], url=data["audio_url"] or "")
    # The prompt box starts with the current prompt: posted unchanged (or not at all) it is kept.
    prompt = data["system_prompt"] if "system_prompt" in request.POST else None
    report = retries.retry_preflight(agent=agent, prompt=prompt, image=image, audio=audio)
    if not report.ok:
        for check in report.failures:
            field = {"image": "image", "audio": "audio", "prompt": "system_prompt"}[check.field]
            if check.field in ("image", "audio") and data[f"{check.field}_url"]:
                field = f"{check.field}_url"
            form.add_error(field, check.message)
        return refused({check.field for check in report.failures})
    try:
        retries.agent_retry(actor=membership, agent=agent, prompt=prompt, image=image, audio=audio)
    except ApplicationError as error:
        agent.refresh_from_db()
        if not agent.is_failed:  # retried meanwhile (a second click): that attempt runs
            error_show(request, error)
            return redirect(
                "agent_detail", org_slug=membership.organization.slug, agent_id=agent_id
            )
        error_show(request, error, form=form)
        # A file bitHuman refused is not kept (the customer must choose another).
        return refused({error.field.removesuffix("_url")} if error.field else set())
    uploads.pending_uploads_discard(list(kept.values()))  # used, or replaced by a new choice
    for check in report.warnings:
        messages.warning(request, check.message)
    agent.refresh_from_db()
    messages.success(request, f"Retrying {agent.name}: attempt {agent.attempt}.")
    return redirect("agent_detail", org_slug=membership.organization.slug, agent_id=agent_id)


@org_view({"POST": Role.MEMBER})
def agent_give_up(request: HttpRequest, membership: Membership, agent_id: UUID) -> HttpResponse:
    agent = _agent_get(membership, agent_id)
    detail = reverse("agent_detail", args=[membership.organization.slug, agent.public_id])
    if not confirmed(request):
        return confirm_page(
            request,
            title=f"Give up on {agent.name}?",
            message=services.GIVE_UP_CONSEQUENCES,
            button="Give up",
            cancel_url=detail,
        )
    try:
        services.agent_give_up(actor=membership, agent=agent)
    except ApplicationError as error:
        error_show(request, error)
    else:
        messages.success(request, f"Gave up on {agent.name}.")
    return redirect(detail)


@org_view({"POST": Role.MEMBER})
def agent_model_add(request: HttpRequest, membership: Membership, agent_id: UUID) -> HttpResponse:
    """Add a model: the price first (a confirmation step naming it), then bitHuman's add."""
    agent = _agent_get(membership, agent_id)
    detail = reverse("agent_detail", args=[membership.organization.slug, agent.public_id])
    model = request.POST.get("model", "")
    choice = next((c for c in model_adds.model_add_choices(agent=agent) if c.model == model), None)
    if choice is None:
        messages.error(request, "Choose a model this agent does not have yet.")
        return redirect(detail)
    if not confirmed(request):
        price = "is free" if choice.credits == 0 else f"costs {choice.credits} bitHuman credits"
        return confirm_page(
            request,
            title=f"Add {choice.label} to {agent.name}?",
            message=f"Adding {choice.label} {price} (bitHuman refunds it if the add fails) "
            f"and takes {choice.time}. The agent keeps working meanwhile.",
            button=f"Add {choice.label}"
            + ("" if choice.credits == 0 else f" for {choice.credits} credits"),
            cancel_url=detail,
            danger=False,
        )
    try:
        added = model_adds.agent_model_add(actor=membership, agent=agent, model=model)
    except ApplicationError as error:
        error_show(request, error)
    else:
        if added.status == "ready":
            messages.success(request, f"{choice.label} is ready for {agent.name}.")
        else:
            messages.success(
                request, f"bitHuman is adding {choice.label} ({choice.time}); it shows here then."
            )
    return redirect(detail)


@org_view({"GET": Role.MEMBER})
def agent_model_download(
    request: HttpRequest, membership: Membership, agent_id: UUID
) -> HttpResponse:
    """The agent's model file: bitHuman's short-lived URL, which the browser follows."""
    agent = _agent_get(membership, agent_id)
    try:
        url = model_adds.agent_model_download_url(
            actor=membership, agent=agent, model=request.GET.get("model", "")
        )
    except ApplicationError as error:
        error_show(request, error)
        return redirect("agent_detail", org_slug=membership.organization.slug, agent_id=agent_id)
    return redirect(url)


# The only way uploaded media is served: to members of the agent's organization, while the
# agent exists (MEDIA_URL is served by nothing, not even `make run`). Streamed from the storage
# (local disk or the private bucket), so a deleted agent's files are gone from serving at once.
_MEDIA_FIELDS = {"face": "image", "voice": "audio"}
_MEDIA_TYPES = {".wav": "audio/wav", ".m4a": "audio/mp4", ".mp3": "audio/mpeg"}


@org_view({"GET": Role.VIEWER})  # type: ignore[arg-type]  # a streamed file
def agent_media(
    request: HttpRequest, membership: Membership, agent_id: UUID, kind: str
) -> FileResponse:
    agent = _agent_get(membership, agent_id)
    field = getattr(agent, _MEDIA_FIELDS[kind]) if kind in _MEDIA_FIELDS else None
    if not field:
        raise Http404("No such file.")
    suffix = PurePosixPath(field.name).suffix.lower()
    content_type = _MEDIA_TYPES.get(suffix) or mimetypes.guess_type(field.name)[0]
    try:
        handle = field.storage.open(field.name, "rb")
    except OSError:  # missing from the storage
        raise Http404("No such file.") from None
    response = FileResponse(
        handle,
        content_type=content_type or "application/octet-stream",
        filename=f"{kind}{suffix}",
    )
    response["Cache-Control"] = "private, no-cache"
    # Never a document of ours even if a browser is told to open it: no scripts, no forms.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


NOTICE_SESSION_KEY = "agent_notices_since:{org}"


@org_view({"GET": Role.VIEWER})
def agent_notices(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Agents this user started that became ready or failed since the last look (any page)."""
    key = NOTICE_SESSION_KEY.format(org=membership.organization_id)
    now = timezone.now()
    since_raw = request.session.get(key)
    request.session[key] = now.isoformat()
    finished: list[Agent] = []
    if since_raw:
        since = datetime.fromisoformat(since_raw)
        finished = list(
            Agent.objects.for_org(membership.organization)
            .filter(
                created_by_id=request.user.pk, status__in=[AgentStatus.READY, AgentStatus.FAILED]
            )
            .filter(Q(ready_at__gt=since) | Q(failed_at__gt=since))[:5]
        )
    return render(request, "agents/notices.html", {"finished": finished})


# --- bitHuman's webhook deliveries (agents.webhooks) ---------------------------------------------


@csrf_exempt
@require_POST
def bithuman_webhook(request: HttpRequest, receiver_token: str) -> HttpResponse:
    """bitHuman's deliveries: verified by HMAC signature, recorded once, processed by a task."""
    try:
        received = webhooks.webhook_receive(
            receiver_token=receiver_token, raw_body=request.body, headers=request.headers
        )
    except ApplicationError as error:
        return JsonResponse({"ok": False, "error": error.message}, status=400)
    if not received.duplicate:
        delivery_pk = received.delivery.pk
        transaction.on_commit(lambda: tasks.webhook_delivery_process.delay(delivery_pk))
    return JsonResponse({"ok": True, "duplicate": received.duplicate})
