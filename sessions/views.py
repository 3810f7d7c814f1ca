"""Session pages: the list, starting, the operator console and its HTMX fragments, the timeline
exports, quick replies, and the organization's LiveKit settings.

Views resolve (tenancy.org_view), act (services) and respond. The console is one template whose
inline partials are the fragments: the timeline (polled every 2 s while the session is live),
one event (appended after Speak / Add context), and the two message forms (swapped out of band:
cleared when delivered, kept with their text and a notice when not).
"""

from __future__ import annotations

import csv
import json
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override

from agents import selectors as agent_selectors
from agents.models import Agent
from portal.confirm import confirm_page, confirmed
from portal.errors import ApplicationError
from portal.forms import error_show
from portal.models import Membership
from portal.tenancy import Role, org_view, role_at_least
from sessions import livekit, selectors, services, transcripts
from sessions.forms import ContextForm, LiveKitConfigForm, QuickReplyForm, SpeakForm, StartForm
from sessions.models import AgentSession, EventKind, EventOutcome, SessionKind

PAGE_SIZE = 25
# Refused form input (empty, too long): htmx swaps it in anyway (sessions/console.js).
UNPROCESSABLE = 422

# The console frames the room, so its policy allows exactly the room hosts: the portal itself
# (the sandbox's embed page), bitHuman's embed hosts, and the LiveKit room link's host.
BITHUMAN_FRAME_SOURCES = ["https://bithuman.ai", "https://agent.viewer.bithuman.ai"]
CONSOLE_CSP: dict[str, Any] = {
    **settings.SECURE_CSP,
    "frame-src": [
        CSP.SELF,
        *BITHUMAN_FRAME_SOURCES,
        *filter(None, [livekit.room_link_origin()]),
    ],
}


def _session_get(membership: Membership, session_id: UUID) -> AgentSession:
    return selectors.session_get(org=membership.organization, public_id=session_id)


def _agent_get(membership: Membership, agent_id: UUID) -> Agent:
    return agent_selectors.agent_get(org=membership.organization, public_id=agent_id)


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def _console_url(membership: Membership, session: AgentSession) -> str:
    return reverse("session_console", args=[membership.organization.slug, session.public_id])


# --- The list -----------------------------------------------------------------------------------


@org_view({"GET": Role.VIEWER})
def session_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    org = membership.organization
    agent = None
    try:
        agent_id = UUID(request.GET.get("agent", ""))
    except ValueError:
        agent_id = None
    if agent_id is not None:
        agent = agent_selectors.agent_get(org=org, public_id=agent_id, archived=True)
    status = request.GET.get("status", "")
    sessions = selectors.session_list(org=org, agent=agent, status=status)
    page = Paginator(sessions, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "sessions": list(page.object_list),
        "agent": agent,
        "status": status,
        "can_operate": role_at_least(membership.role, Role.MEMBER),
    }
    return render(request, "sessions/list.html", context)


# --- Starting -----------------------------------------------------------------------------------


def _start_page(
    request: HttpRequest,
    membership: Membership,
    agent: Agent,
    form: StartForm,
    *,
    livekit_ready: bool,
    status: int = 200,
) -> HttpResponse:
    context = {
        "agent": agent,
        "form": form,
        "livekit_ready": livekit_ready,
        "is_admin": role_at_least(membership.role, Role.ADMIN),
    }
    return render(request, "sessions/start.html", context, status=status)


@org_view({"GET": Role.MEMBER, "POST": Role.MEMBER})
def session_start(request: HttpRequest, membership: Membership, agent_id: UUID) -> HttpResponse:
    """POST starts a session. Without a room choice it starts a hosted one, unless the
    organization also has LiveKit: then (and on GET) the page asks which."""
    agent = _agent_get(membership, agent_id)
    livekit_ready = selectors.livekit_config_get(org=membership.organization) is not None
    chosen = request.method == "POST" and ("kind" in request.POST or not livekit_ready)
    if not chosen:
        return _start_page(
            request,
            membership,
            agent,
            StartForm(livekit_ready=livekit_ready),
            livekit_ready=livekit_ready,
        )
    data = request.POST if "kind" in request.POST else {"kind": SessionKind.HOSTED}
    form = StartForm(data, livekit_ready=livekit_ready)
    if form.is_valid():
        try:
            session = services.session_start(
                actor=membership, agent=agent, kind=form.cleaned_data["kind"]
            )
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            messages.success(
                request, "Session started. Speak once the room below shows the avatar."
            )
            return redirect(_console_url(membership, session))
    return _start_page(request, membership, agent, form, livekit_ready=livekit_ready, status=400)


# --- The console --------------------------------------------------------------------------------


def _console_context(
    request: HttpRequest,
    membership: Membership,
    session: AgentSession,
    **overrides: Any,
) -> dict[str, Any]:
    org = membership.organization
    can_operate = role_at_least(membership.role, Role.MEMBER)
    links = None
    if session.is_live:
        links = selectors.room_links(
            session=session,
            user=request.user,  # type: ignore[arg-type]
            can_talk=can_operate,
        )
    context: dict[str, Any] = {
        "session": session,
        "events": selectors.timeline(session=session),
        "links": links,
        "can_operate": can_operate,
        "speak_form": SpeakForm(),
        "context_form": ContextForm(),
        "reply_form": QuickReplyForm(),
        "quick_replies": selectors.quick_reply_list(org=org),
        "idle_minutes": settings.SESSION_IDLE_MINUTES,
        "room": services.room_state(session=session) if session.is_live else None,
    }
    context.update(overrides)
    return context


@org_view({"GET": Role.VIEWER})
@csp_override(CONSOLE_CSP)
def session_console(request: HttpRequest, membership: Membership, session_id: UUID) -> HttpResponse:
    session = _session_get(membership, session_id)
    transcripts.transcript_pull_throttled(session)  # visitor and avatar lines, Read budget kept
    if _is_htmx(request):
        context = {
            "session": session,
            "events": selectors.timeline(session=session),
            "idle_minutes": settings.SESSION_IDLE_MINUTES,
            "room": services.room_state(session=session) if session.is_live else None,
        }
        return render(request, "sessions/console.html#timeline", context)
    return render(request, "sessions/console.html", _console_context(request, membership, session))


def _message_post(
    request: HttpRequest, membership: Membership, session_id: UUID, *, kind: str
) -> HttpResponse:
    session = _session_get(membership, session_id)
    speak = kind == EventKind.SPEAK
    form: SpeakForm | ContextForm = SpeakForm(request.POST) if speak else ContextForm(request.POST)
    event = None
    if form.is_valid():
        text = form.cleaned_data["message" if speak else "context"]
        try:
            if speak:
                event = services.session_speak(actor=membership, session=session, text=text)
            else:
                event = services.session_context_add(actor=membership, session=session, text=text)
        except ApplicationError as error:
            error_show(request, error, form=form)
    delivered = event is not None and event.outcome == EventOutcome.DELIVERED
    if delivered:
        form = SpeakForm() if speak else ContextForm()  # clear the box
    name = "speak" if speak else "context"
    # Not delivered: the text stays in the box, with the outcome next to it.
    fragment = {f"{name}_form": form, f"{name}_notice": None if delivered else event}
    if _is_htmx(request):
        body = render_to_string(
            f"sessions/console.html#{name}_form",
            {"session": session, "oob": True, **fragment},
            request,
        )
        if event is not None:
            body = render_to_string("sessions/console.html#event", {"event": event}, request) + body
        return HttpResponse(body, status=200 if event is not None else UNPROCESSABLE)
    if delivered:
        return redirect(_console_url(membership, session))
    context = _console_context(request, membership, session, **fragment)
    return render(
        request, "sessions/console.html", context, status=200 if event is not None else 400
    )


@org_view({"POST": Role.MEMBER})
def session_speak(request: HttpRequest, membership: Membership, session_id: UUID) -> HttpResponse:
    return _message_post(request, membership, session_id, kind=EventKind.SPEAK)


@org_view({"POST": Role.MEMBER})
def session_context(request: HttpRequest, membership: Membership, session_id: UUID) -> HttpResponse:
    return _message_post(request, membership, session_id, kind=EventKind.CONTEXT)


@org_view({"POST": Role.MEMBER})
def session_end(request: HttpRequest, membership: Membership, session_id: UUID) -> HttpResponse:
    session = _session_get(membership, session_id)
    if not confirmed(request):
        return confirm_page(
            request,
            title=f"End the session with {session.agent.name}?",
            message="The avatar leaves the room and nobody can speak to it in this session again; "
            "start a new session to continue.",
            button="End session",
            cancel_url=_console_url(membership, session),
        )
    try:
        ended = services.session_end(actor=membership, session=session)
    except ApplicationError as error:
        error_show(request, error)
    else:
        if ended:
            messages.success(request, "Session ended.")
        else:
            messages.info(request, "This session had already ended.")
    return redirect(_console_url(membership, session))


# --- Exports ------------------------------------------------------------------------------------

_CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> object:
    # A cell starting like a formula is run by spreadsheets: quote it so it stays text.
    if isinstance(value, str) and value.startswith(_CSV_FORMULA_STARTS):
        return "'" + value
    return value


def _attachment(response: HttpResponse, session: AgentSession, extension: str) -> HttpResponse:
    stamp = session.started_at.strftime("%Y%m%d-%H%M")
    name = f"session-{session.agent.code or 'agent'}-{stamp}.{extension}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@org_view({"GET": Role.VIEWER})
def session_export_csv(
    request: HttpRequest, membership: Membership, session_id: UUID
) -> HttpResponse:
    session = _session_get(membership, session_id)
    transcripts.transcript_pull_throttled(session)
    export = selectors.timeline_export(session=session)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    writer = csv.DictWriter(response, fieldnames=selectors.EXPORT_COLUMNS)
    writer.writeheader()
    for row in export["events"]:
        writer.writerow({key: _csv_cell(value) for key, value in row.items()})
    return _attachment(response, session, "csv")


@org_view({"GET": Role.VIEWER})
def session_export_json(
    request: HttpRequest, membership: Membership, session_id: UUID
) -> HttpResponse:
    session = _session_get(membership, session_id)
    transcripts.transcript_pull_throttled(session)
    body = json.dumps(selectors.timeline_export(session=session), ensure_ascii=False, indent=2)
    # Still the same JSON, but no byte of it can be read as markup by anything that sniffs.
    body = body.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    return _attachment(response, session, "json")


# --- Quick replies ------------------------------------------------------------------------------


def _quick_replies_response(
    request: HttpRequest,
    membership: Membership,
    session: AgentSession,
    form: QuickReplyForm,
) -> HttpResponse:
    if _is_htmx(request):
        context = {
            "session": session,
            "reply_form": form if form.errors else QuickReplyForm(),
            "quick_replies": selectors.quick_reply_list(org=membership.organization),
        }
        status = UNPROCESSABLE if form.errors else 200
        return render(request, "sessions/console.html#quick_replies", context, status=status)
    for errors in form.errors.values():
        messages.error(request, " ".join(str(error) for error in errors))
    return redirect(_console_url(membership, session))


@org_view({"POST": Role.MEMBER})
def quick_reply_add(request: HttpRequest, membership: Membership, session_id: UUID) -> HttpResponse:
    session = _session_get(membership, session_id)
    form = QuickReplyForm(request.POST)
    if form.is_valid():
        try:
            services.quick_reply_create(actor=membership, text=form.cleaned_data["reply"])
        except ApplicationError as error:
            error_show(request, error, form=form)
    return _quick_replies_response(request, membership, session, form)


@org_view({"POST": Role.MEMBER})
def quick_reply_delete(
    request: HttpRequest, membership: Membership, session_id: UUID, reply_id: UUID
) -> HttpResponse:
    session = _session_get(membership, session_id)
    reply = selectors.quick_reply_get(org=membership.organization, public_id=reply_id)
    services.quick_reply_delete(actor=membership, reply=reply)
    return _quick_replies_response(request, membership, session, QuickReplyForm())


# --- The organization's LiveKit project (a section of the settings page) ------------------------


@org_view({"GET": Role.ADMIN, "POST": Role.ADMIN})
def livekit_settings(request: HttpRequest, membership: Membership) -> HttpResponse:
    org = membership.organization
    settings_url = reverse("org_settings", args=[org.slug]) + "#livekit"
    if request.method == "POST" and request.POST.get("action") == "remove":
        services.livekit_config_delete(actor=membership)
        messages.success(request, "LiveKit settings removed.")
        return redirect(settings_url)
    config = selectors.livekit_config_get(org=org)
    if request.method != "POST":
        initial = (
            {"url": config.url, "api_key": config.api_key, "agent_name": config.agent_name}
            if config
            else {}
        )
        form = LiveKitConfigForm(initial=initial)
        context = {"livekit_form": form, "livekit_config": config}
        return render(request, "sessions/livekit_settings.html", context)
    form = LiveKitConfigForm(request.POST)
    if form.is_valid():
        try:
            services.livekit_config_save(actor=membership, **form.cleaned_data)
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            messages.success(
                request, "LiveKit settings saved: sessions can now run in your LiveKit project."
            )
            return redirect(settings_url)
    context = {"livekit_form": form, "livekit_config": config}
    return render(request, "sessions/livekit_settings.html", context, status=400)
