"""Thin views: parse, call one service or selector, answer the spec's shape.

The bitHuman API views receive `(request, account)` from `http.api_endpoint`, which handles
authentication, latency, faults, rate limits and the error envelope.
"""

from __future__ import annotations

import hashlib
import uuid
from html import escape

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.middleware.csp import get_nonce
from django.shortcuts import render
from django.urls import reverse
from django.utils.csp import CSP, build_policy
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from sandbox import (
    billing,
    catalog,
    conf,
    files,
    keys,
    model_adds,
    payloads,
    rooms,
    runtime,
    schemas,
    selectors,
    services,
)
from sandbox import webhooks as sandbox_webhooks
from sandbox.catalog import BUCKET_GENERATE, BUCKET_READ, BUCKET_WRITE
from sandbox.errors import SandboxError, agent_not_found
from sandbox.fields import body_object, field_bool, field_number, field_str, query_int
from sandbox.http import (
    account_authenticate,
    api_endpoint,
    error_response,
    method_not_allowed_response,
    method_router,
    not_found_response,
    request_id_new,
)
from sandbox.models import SandboxAccount, SandboxAgent

# --- Authentication and account -----------------------------------------------------------------


@csrf_exempt
def validate(request: HttpRequest) -> HttpResponse:
    """Always 200: `{"valid": false}` rather than a 401 for a missing or wrong secret."""
    if request.method != "POST":
        return method_not_allowed_response()
    try:
        account_authenticate(request)
    except SandboxError:
        response = JsonResponse({"valid": False})
    else:
        response = JsonResponse({"valid": True})
    response["X-Request-Id"] = request_id_new()
    return response


@api_endpoint(BUCKET_READ)
def me(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    account.refresh_from_db()
    data = payloads.me_data(request, account)
    # Live minutes are spent as they run (sandbox.billing): the same balance everywhere.
    data["credit_balance"] = data["plan_credits_remaining"] = billing.balance(account=account)
    return JsonResponse({"data": data, "status": "success", "status_code": 200})


@api_endpoint(BUCKET_READ)
def pricing(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    return JsonResponse({"success": True, "data": catalog.PRICING})


# --- Billing (api/billing.md) and API secrets (api/api-keys.md) ----------------------------------


@api_endpoint(BUCKET_READ)
def credit_summaries(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    # `user_id`, `app` and `app_key` are accepted and change nothing: always the caller's own.
    return JsonResponse({"success": True, "data": billing.credit_summary(account=account)})


@api_endpoint(BUCKET_READ)
def usage(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    query = billing.UsageQuery(
        limit=query_int(request, "limit", default=50, minimum=1, maximum=200),
        offset=query_int(request, "offset", default=0, minimum=0, maximum=10**9),
        start=billing.moment_parse(request.GET.get("start"), "start"),
        end=billing.moment_parse(request.GET.get("end"), "end"),
        agent_code=request.GET.get("agent_code") or None,
    )
    page, total = billing.usage_page(account=account, query=query)
    pagination = {
        "limit": query.limit,
        "offset": query.offset,
        "total": total,
        "has_more": query.offset + len(page) < total,
    }
    return JsonResponse({"success": True, "data": page, "pagination": pagination})


@api_endpoint(BUCKET_WRITE)
def api_secret_create(request: HttpRequest, account: SandboxAccount, user_id: str) -> HttpResponse:
    runtime.user_check(account=account, user_id=user_id)
    alias = body_object(request, required=False).get("alias")
    return JsonResponse(keys.secret_create(account=account, alias=alias))


@api_endpoint(BUCKET_READ)
def api_secret_list(request: HttpRequest, account: SandboxAccount, user_id: str) -> HttpResponse:
    runtime.user_check(account=account, user_id=user_id)
    return JsonResponse(keys.secrets_list(account=account))


@api_endpoint(BUCKET_READ)
def api_secret_value(
    request: HttpRequest, account: SandboxAccount, user_id: str, alias: str
) -> HttpResponse:
    runtime.user_check(account=account, user_id=user_id)
    return JsonResponse(keys.secret_value(account=account, alias=alias))


@api_endpoint(BUCKET_WRITE)
def api_secret_delete(
    request: HttpRequest, account: SandboxAccount, user_id: str, alias: str
) -> HttpResponse:
    runtime.user_check(account=account, user_id=user_id)
    return JsonResponse(keys.secret_delete(account=account, alias=alias))


api_secrets = method_router(GET=api_secret_list, POST=api_secret_create)
api_secret_detail = method_router(DELETE=api_secret_delete)


# --- Agents -------------------------------------------------------------------------------------


@api_endpoint(BUCKET_GENERATE)
def agent_generate(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    data = schemas.generate_in(body_object(request))
    answer = services.agent_generate(
        account=account,
        data=data,
        idempotency_key=request.headers.get("Idempotency-Key", "").strip()[:255] or None,
    )
    response = HttpResponse(answer.body, status=answer.status, content_type="application/json")
    if answer.replayed:
        response["Idempotency-Replayed"] = "true"
    return response


@api_endpoint(BUCKET_READ)
def agent_status(request: HttpRequest, account: SandboxAccount, agent_id: str) -> HttpResponse:
    agent = selectors.agent_owned(account=account, code=agent_id)
    state = services.agent_refresh(agent=agent)
    return JsonResponse(
        {"success": True, "data": payloads.agent_status_data(request, agent, state)}
    )


@api_endpoint(BUCKET_READ)
def agent_get(request: HttpRequest, account: SandboxAccount, code: str) -> HttpResponse:
    agent = selectors.agent_owned(account=account, code=code)
    state = services.agent_refresh(agent=agent)
    return JsonResponse({"success": True, "data": payloads.agent_data(request, agent, state)})


@api_endpoint(BUCKET_WRITE)
def agent_update(request: HttpRequest, account: SandboxAccount, code: str) -> HttpResponse:
    system_prompt = schemas.system_prompt_in(body_object(request))
    agent = services.agent_prompt_update(account=account, code=code, system_prompt=system_prompt)
    return JsonResponse({"agent_code": agent.code, "updated": True})


@api_endpoint(BUCKET_WRITE)
def agent_delete(request: HttpRequest, account: SandboxAccount, code: str) -> HttpResponse:
    services.agent_delete(account=account, code=code)
    return JsonResponse({"success": True, "agent_code": code, "deleted": True})


@api_endpoint(BUCKET_READ)
def agent_list(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    limit = query_int(request, "limit", default=20, minimum=1, maximum=100)
    offset = query_int(request, "offset", default=0, minimum=0, maximum=10**9)
    status = request.GET.get("status") or None
    page, total = services.agent_list(account=account, limit=limit, offset=offset, status=status)
    return JsonResponse(
        {
            "success": True,
            "data": [payloads.agent_data(request, agent, state) for agent, state in page],
            "pagination": {
                "limit": limit,
                "offset": offset,
                "total": total,
                "has_more": offset + len(page) < total,
            },
        }
    )


def _deliver(account: SandboxAccount, code: str, message: schemas.MessageIn) -> JsonResponse:
    delivered, skipped = rooms.agent_message_deliver(
        account=account,
        code=code,
        kind=message.context_type,
        text=message.text,
        room_id=message.room_id,
    )
    answer: dict[str, object] = {
        "agent_code": code,
        "context_type": message.context_type,
        "delivered_to_rooms": delivered,
    }
    if skipped:  # api/agents.md: a non-zero count means the message reached no one there
        answer["rooms_skipped_no_worker"] = skipped
    return JsonResponse(answer)


@api_endpoint(BUCKET_WRITE)
def agent_speak(request: HttpRequest, account: SandboxAccount, code: str) -> HttpResponse:
    return _deliver(account, code, schemas.speak_in(body_object(request)))


@api_endpoint(BUCKET_WRITE)
def agent_add_context(request: HttpRequest, account: SandboxAccount, code: str) -> HttpResponse:
    return _deliver(account, code, schemas.add_context_in(body_object(request)))


# --- Files and models (api/files.md, api/agents.md) ---------------------------------------------


@api_endpoint(BUCKET_WRITE)
def file_upload(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    if request.method != "POST":
        return method_not_allowed_response()
    data = files.file_upload(
        request=request, account=account, data=files.upload_in(body_object(request))
    )
    return JsonResponse({"success": True, "message": "File uploaded successfully", "data": data})


@require_GET
def file_asset(request: HttpRequest, file_id: uuid.UUID, name: str) -> HttpResponse:
    """An uploaded file at its public URL (what bitHuman's CDN serves)."""
    stored = files.file_get(file_id=file_id, name=name)
    if stored is None:
        return not_found_response()
    response = HttpResponse(bytes(stored.data), content_type=stored.mime_type)
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@api_endpoint(BUCKET_WRITE)
def agent_model_add(request: HttpRequest, account: SandboxAccount, code: str) -> HttpResponse:
    if request.method != "POST":
        return method_not_allowed_response()
    return JsonResponse(model_adds.model_add(account=account, code=code, body=body_object(request)))


@api_endpoint(BUCKET_READ)
def agent_model_download(request: HttpRequest, account: SandboxAccount, code: str) -> HttpResponse:
    if request.method != "GET":
        return method_not_allowed_response()
    family, filename = model_adds.model_download(
        account=account, code=code, model=request.GET.get("model") or None
    )
    url = request.build_absolute_uri(reverse("sandbox:model_file", args=[code]))
    if request.GET.get("redirect", "").lower() in ("false", "0", "no"):
        data = {
            "code": code,
            "model": family,
            "filename": filename,
            "url": url,
            "expires_in": None if family == "essence-1" else 3600,
        }
        return JsonResponse({"success": True, "data": data})
    return HttpResponseRedirect(url)


# --- Tokens -------------------------------------------------------------------------------------


@api_endpoint(BUCKET_WRITE, session_start=True)
def embed_token_request(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    data = rooms.embed_token_issue(
        account=account, data=schemas.embed_token_in(body_object(request))
    )
    return JsonResponse({"status": "success", "status_code": 200, "data": data})


@api_endpoint(BUCKET_WRITE)
def runtime_token_request(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    data = rooms.runtime_token_issue(
        account=account, data=schemas.runtime_token_in(body_object(request, required=False))
    )
    return JsonResponse({"data": data, "status": "success", "status_code": 200})


# --- Runtime sessions (api/runtime-sessions.md) ---------------------------------------------------


@api_endpoint(BUCKET_READ)
def runtime_sessions(request: HttpRequest, account: SandboxAccount, user_id: str) -> HttpResponse:
    runtime.user_check(account=account, user_id=user_id)
    data = runtime.sessions_list(
        account=account,
        window=request.GET.get("window", "all"),
        kind=request.GET.get("kind", "all"),
        limit=query_int(request, "limit", default=50, minimum=1, maximum=200),
    )
    return JsonResponse({"success": True, "data": data})


@api_endpoint(BUCKET_READ)
def runtime_session_messages(
    request: HttpRequest, account: SandboxAccount, user_id: str, session_id: str
) -> HttpResponse:
    runtime.user_check(account=account, user_id=user_id)
    data = runtime.session_messages(account=account, session_id=session_id)
    return JsonResponse({"success": True, "data": data})


@api_endpoint(BUCKET_WRITE)
def runtime_session_terminate(
    request: HttpRequest, account: SandboxAccount, user_id: str, session_id: str
) -> HttpResponse:
    if request.method != "POST":
        return method_not_allowed_response()
    runtime.user_check(account=account, user_id=user_id)
    reason = field_str(body_object(request, required=False), "reason")
    data = runtime.session_terminate(account=account, session_id=session_id, reason=reason)
    return JsonResponse({"success": True, "data": data})


@api_endpoint(BUCKET_WRITE)
def runtime_revoke_all(request: HttpRequest, account: SandboxAccount, user_id: str) -> HttpResponse:
    if request.method != "POST":
        return method_not_allowed_response()
    runtime.user_check(account=account, user_id=user_id)
    reason = field_str(body_object(request, required=False), "reason")
    data = runtime.runtime_revoke_all(account=account, reason=reason)
    return JsonResponse({"success": True, "data": data})


# --- Webhooks -----------------------------------------------------------------------------------


@api_endpoint(BUCKET_WRITE)
def webhook_create(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    webhook = sandbox_webhooks.webhook_create(
        account=account, data=schemas.webhook_in(body_object(request))
    )
    return JsonResponse({"success": True, "data": payloads.webhook_data(webhook, with_secret=True)})


@api_endpoint(BUCKET_READ)
def webhook_list(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    webhooks = selectors.webhooks_of(account=account)
    return JsonResponse({"success": True, "data": [payloads.webhook_data(w) for w in webhooks]})


@api_endpoint(BUCKET_READ)
def webhook_get(request: HttpRequest, account: SandboxAccount, webhook_id: str) -> HttpResponse:
    webhook = selectors.webhook_owned(account=account, webhook_id=webhook_id)
    return JsonResponse({"success": True, "data": payloads.webhook_data(webhook)})


@api_endpoint(BUCKET_WRITE)
def webhook_delete(request: HttpRequest, account: SandboxAccount, webhook_id: str) -> HttpResponse:
    sandbox_webhooks.webhook_delete(account=account, webhook_id=webhook_id)
    return JsonResponse({"success": True, "deleted": True})


@api_endpoint(BUCKET_WRITE)
def webhook_test(request: HttpRequest, account: SandboxAccount, webhook_id: str) -> HttpResponse:
    delivery = sandbox_webhooks.webhook_ping(account=account, webhook_id=webhook_id)
    data = {
        "delivered": delivery.delivered,
        "status_code": delivery.status_code,
        "attempts": delivery.attempts,
    }
    return JsonResponse({"success": True, "data": data})


@api_endpoint(BUCKET_READ)
def webhook_deliveries(
    request: HttpRequest, account: SandboxAccount, webhook_id: str
) -> HttpResponse:
    webhook = selectors.webhook_owned(account=account, webhook_id=webhook_id)
    deliveries = selectors.deliveries_of(webhook=webhook)
    return JsonResponse({"success": True, "data": [payloads.delivery_data(d) for d in deliveries]})


@csrf_exempt
def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    return not_found_response()


agent_detail = method_router(GET=agent_get, POST=agent_update, DELETE=agent_delete)
webhooks = method_router(GET=webhook_list, POST=webhook_create)
webhook_detail = method_router(GET=webhook_get, DELETE=webhook_delete)


# --- The hosted embed page (what https://bithuman.ai/embed/<CODE>?token=... serves) -----------


def _embed_policy() -> dict[str, list[str]]:
    return {
        "default-src": [CSP.SELF],
        "script-src": [CSP.SELF, CSP.NONCE],
        "style-src": [CSP.SELF],
        # The agent's face may be any public image URL the customer gave.
        "img-src": [CSP.SELF, "data:", "https:", "http:"],
        "connect-src": [CSP.SELF],
        "frame-ancestors": conf.embed_frame_ancestors(),
        "form-action": [CSP.NONE],
        "base-uri": [CSP.SELF],
        "object-src": [CSP.NONE],
    }


@xframe_options_exempt
@require_GET
def embed_page(request: HttpRequest, code: str) -> HttpResponse:
    token = request.GET.get("token", "")
    agent = selectors.agent_public(code=code)
    context: dict[str, object] = {"code": code, "agent": agent, "token": token, "problem": ""}
    status = 200
    try:
        if agent is None:
            raise agent_not_found(code)
        rooms.embed_room_touch(code=code, token=token)
    except SandboxError as error:
        context["problem"], status = error.message, error.status
    if agent is not None:
        context |= {
            "face_url": face_url(agent),
            "fallback_url": reverse("sandbox:face", args=[code]),
            "live_url": reverse("sandbox:embed_live", args=[code]),
            "talk_url": reverse("sandbox:embed_talk", args=[code]),
            "poll_ms": conf.embed_poll_ms(),
        }
    response = render(request, "sandbox/embed.html", context, status=status)
    # A policy set by the view is kept by the CSP middleware: this page's own, not the portal's.
    response[str(CSP.HEADER_ENFORCE)] = build_policy(_embed_policy(), get_nonce(request))
    return response


@csrf_exempt
@require_POST
def embed_live(request: HttpRequest, code: str) -> HttpResponse:
    """The embed page's heartbeat and message poll: keeps its room live, returns new messages."""
    try:
        room = rooms.embed_room_touch(code=code, token=request.GET.get("token", ""))
        after = query_int(request, "after", default=0, minimum=0, maximum=2**62)
    except SandboxError as error:
        return error_response(error)
    messages = [
        {
            "id": message.id,
            "type": message.kind,
            "text": message.text,
            "created_at": payloads.iso(message.created_at),
        }
        for message in selectors.room_messages(room=room, after=after)
    ]
    return JsonResponse({"room_id": room.name, "messages": messages})


def face_url(agent: SandboxAgent) -> str:
    """The agent's own face: the image it was made from (its URL, or the uploaded file)."""
    if agent.image_url:
        return agent.image_url
    return reverse("sandbox:agent_face" if agent.image_type else "sandbox:face", args=[agent.code])


@require_GET
def agent_face(request: HttpRequest, code: str) -> HttpResponse:
    """The image the agent was made from, when it was uploaded (else the generated face)."""
    agent = selectors.agent_public(code=code)
    if agent is None or not agent.image_type:
        return face(request, code)
    response = HttpResponse(bytes(agent.image_data), content_type=agent.image_type)
    response["Cache-Control"] = "public, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@csrf_exempt
@require_POST
def embed_talk(request: HttpRequest, code: str) -> HttpResponse:
    """A visitor talks in the hosted room (a text box stands in for the microphone); the avatar
    answers. Both become lines of the room's transcript; the page's poll shows them."""
    try:
        lines = rooms.visitor_talk(
            code=code, token=request.GET.get("token", ""), text=request.POST.get("text", "")
        )
    except SandboxError as error:
        return error_response(error)
    return JsonResponse({"messages": [{"id": m.id, "type": m.kind} for m in lines]})


_FACE_COLOURS = ("#3b5bdb", "#0c8599", "#2b8a3e", "#e67700", "#c2255c", "#5f3dc4")


@require_GET
def face(request: HttpRequest, code: str) -> HttpResponse:
    """A generated placeholder face: the agent's initials on a colour picked from its code."""
    agent = selectors.agent_public(code=code)
    name = agent.name if agent else code
    initials = "".join(word[0] for word in name.split()[:2]).upper() or "?"
    colour = _FACE_COLOURS[int(hashlib.sha256(code.encode()).hexdigest(), 16) % 6]
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 256 256" role="img" '
        f'aria-label="{escape(name)}"><rect width="256" height="256" fill="{colour}"/>'
        '<text x="128" y="162" font-family="system-ui, sans-serif" font-size="96" '
        f'font-weight="600" fill="#ffffff" text-anchor="middle">{escape(initials)}</text></svg>'
    )
    response = HttpResponse(svg, content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=3600"
    return response


@require_GET
def model_file(request: HttpRequest, code: str) -> HttpResponse:
    """A stand-in for the agent's downloadable .imx model (public, like a signed URL)."""
    agent = selectors.agent_public(code=code)
    if agent is None or agent.status != "ready":
        return not_found_response()
    response = HttpResponse(
        f"BITHUMAN-SANDBOX-IMX {agent.code} {agent.model}\n".encode(),
        content_type="application/octet-stream",
    )
    response["Content-Disposition"] = f'attachment; filename="{agent.code}.imx"'
    return response


# --- The sandbox's own control API (not bitHuman's): knobs, test clock, rooms --------------------


@api_endpoint(None, faults=False)
def control_account_get(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    return JsonResponse(payloads.account_knobs(account))


@api_endpoint(None, faults=False)
def control_account_update(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    account = services.sandbox_account_configure(account=account, changes=body_object(request))
    return JsonResponse(payloads.account_knobs(account))


@api_endpoint(None, faults=False)
def control_clock(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    if request.method != "POST":
        return method_not_allowed_response()
    seconds = field_number(body_object(request), "advance_seconds", minimum=0, maximum=1e9)
    offset = services.sandbox_clock_advance(account=account, seconds=seconds)
    return JsonResponse({"clock_offset_seconds": offset})


@api_endpoint(None, faults=False)
def control_rooms(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    if request.method != "GET":
        return method_not_allowed_response()
    # ?all=1 adds rooms that ended, with how (the terminate reason the sandbox received).
    every = request.GET.get("all") == "1"
    found = (
        selectors.rooms_of(account=account)
        if every
        else selectors.rooms_live(account=account, name=None)
    )
    rooms = [
        {
            "room_id": room.name,
            "session_id": str(room.session_id),
            "kind": room.kind,
            "agent_code": room.agent.code,
            "has_worker": room.has_worker,
            "expires_at": payloads.iso(room.expires_at),
            "ended_at": payloads.iso(room.ended_at) if room.ended_at else None,
            "terminated_reason": room.terminated_reason,
            "messages": [
                {"type": m.kind, "text": m.text}
                for m in selectors.room_messages(room=room, after=0)
            ],
        }
        for room in found
    ]
    return JsonResponse({"rooms": rooms})


@api_endpoint(None, faults=False)
def control_room_worker(
    request: HttpRequest, account: SandboxAccount, room_id: str
) -> HttpResponse:
    """POST {"present": false}: the avatar worker left the room (speak skips it)."""
    if request.method != "POST":
        return method_not_allowed_response()
    present = field_bool(body_object(request), "present", default=True)
    if not rooms.room_worker_set(account=account, room_id=room_id, present=present):
        raise SandboxError(404, "NOT_FOUND", f"No active room {room_id}")
    return JsonResponse({"room_id": room_id, "has_worker": present})


@api_endpoint(None, faults=False)
def control_room_end(request: HttpRequest, account: SandboxAccount, room_id: str) -> HttpResponse:
    if request.method != "POST":
        return method_not_allowed_response()
    ended = rooms.room_end(account=account, room_id=room_id)
    if not ended:
        raise SandboxError(404, "NOT_FOUND", f"No active room {room_id}")
    return JsonResponse({"room_id": room_id, "ended": True})


control_account = method_router(GET=control_account_get, POST=control_account_update)
