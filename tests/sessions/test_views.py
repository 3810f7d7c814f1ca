"""Session pages through HTTP: roles, starting, the console and its fragments, limits, escaping,
exports, the CSP of the console, the list, quick replies, LiveKit settings and the admin.

bitHuman is replaced by a small fake here (the services tests talk to the sandbox over HTTP)."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from organizations import connections
from portal.bithuman import errors as bh_errors
from portal.bithuman.types import (
    Account,
    ContextDelivery,
    EmbedToken,
    RuntimeSession,
    RuntimeSessionPage,
    RuntimeSessionTerminated,
)
from sessions.models import AgentSession, EventOutcome, LiveKitConfig, QuickReply, SessionEvent
from tests.conftest import client_for
from tests.factories import (
    AgentFactory,
    AgentSessionFactory,
    QuickReplyFactory,
    SessionEventFactory,
    UserFactory,
)
from tests.sessions.conftest import LIVEKIT_SECRET, LIVEKIT_URL

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
PAYLOAD = '<script>alert("x")</script><b>bold</b> & <img src=x onerror=alert(1)>'


class FakeBithuman:
    """The org's bitHuman client, as far as sessions use it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []
        self.rooms = 1
        self.error: bh_errors.BithumanError | None = None
        self.runtime_sessions: tuple[RuntimeSession, ...] = ()

    def __enter__(self) -> FakeBithuman:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _deliver(self, name: str, **body: object) -> ContextDelivery:
        self.sent.append((name, body))
        if self.error is not None:
            raise self.error
        return ContextDelivery(delivered_to_rooms=self.rooms)

    def agent_speak(self, **body: object) -> ContextDelivery:
        return self._deliver("speak", **body)

    def agent_context_add(self, **body: object) -> ContextDelivery:
        return self._deliver("context", **body)

    def account_get(self) -> Account:
        return Account(user_id="user-1")

    def pricing_get(self) -> None:
        # The agent page's model prices: unreachable here, so the documented table is shown.
        raise bh_errors.TransportError(message="no pricing here", request_may_have_arrived=False)

    def runtime_session_list(self, **query: object) -> RuntimeSessionPage:
        return RuntimeSessionPage(sessions=self.runtime_sessions)

    def runtime_session_terminate(self, **body: object) -> RuntimeSessionTerminated:
        self.sent.append(("terminate", body))
        return RuntimeSessionTerminated(session_id=str(body["session_id"]), ended=True)

    def embed_token_request(self, **body: object) -> EmbedToken:
        self.sent.append(("embed_token", body))
        if self.error is not None:
            raise self.error
        return EmbedToken(token="eyJ.fake.token", sid="sid-1", supported_models=("expression-1",))


@pytest.fixture
def fake(monkeypatch, org) -> FakeBithuman:
    bithuman = FakeBithuman()
    connections.connection_get(org=org)  # the org's connection exists, as in real life
    monkeypatch.setattr(connections, "client_for", lambda **kwargs: bithuman)
    return bithuman


@pytest.fixture
def session(org) -> AgentSession:
    return AgentSessionFactory(agent__organization=org, agent__name="Ava")


def url(name: str, org, *args) -> str:
    return reverse(name, args=[org.slug, *args])


def _textarea(html: str, field: str) -> str:
    match = re.search(rf'<textarea[^>]*id="id_{field}"[^>]*>(.*?)</textarea>', html, re.S)
    assert match, f"no {field} box in the answer"
    return match.group(1).strip()


# --- Roles --------------------------------------------------------------------------------------


def test_viewers_watch_and_read_but_cannot_start_speak_add_context_or_end(
    org, viewer, session, fake
):
    SessionEventFactory(session=session, text="Welcome everyone")
    client = client_for(viewer)
    page = client.get(url("session_console", org, session.public_id))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'allow="microphone *; camera *; autoplay *"' in html
    assert "Welcome everyone" in html
    assert ">Speak</button>" not in html and ">End session</button>" not in html
    assert client.get(url("session_list", org)).status_code == 200
    assert client.get(url("session_export_csv", org, session.public_id)).status_code == 200

    forbidden = [
        (url("session_speak", org, session.public_id), {"message": "Hi"}),
        (url("session_context", org, session.public_id), {"context": "Hi"}),
        (url("session_end", org, session.public_id), {}),
        (url("session_start", org, session.agent.public_id), {"kind": "hosted"}),
        (url("quick_reply_add", org, session.public_id), {"reply": "Hi"}),
    ]
    for path, data in forbidden:
        assert client.post(path, data).status_code == 403, path
    assert client.get(url("session_start", org, session.agent.public_id)).status_code == 403
    session.refresh_from_db()
    assert session.is_live
    assert session.events.count() == 1
    assert AgentSession.objects.count() == 1 and not QuickReply.objects.exists()
    assert fake.sent == []


def test_member_console_has_the_room_and_the_operator_controls(org, member, session):
    html = client_for(member).get(url("session_console", org, session.public_id)).content.decode()
    assert f'src="{session.room_url}"' in html
    assert 'allow="microphone *; camera *; autoplay *"' in html
    for label in [">Speak</button>", ">Add context</button>", ">End session</button>"]:
        assert label in html
    assert "Open in a new tab</a>" in html and "Copy join link</button>" in html
    assert 'hx-disabled-elt="find button"' in html
    assert 'src="/static/sessions/console.js"' in html


# --- Starting -----------------------------------------------------------------------------------


def test_start_session_from_the_agent_page(org, member, viewer, fake):
    agent = AgentFactory(organization=org, name="Ava")
    detail = url("agent_detail", org, agent.public_id)
    start = url("session_start", org, agent.public_id)
    html = client_for(member).get(detail).content.decode()
    assert f'<form method="post" action="{start}">' in html
    assert ">Start session</button>" in html
    assert start not in client_for(viewer).get(detail).content.decode()

    response = client_for(member).post(start)
    session = AgentSession.objects.get()
    assert response.status_code == 302
    assert response["Location"] == url("session_console", org, session.public_id)
    assert session.kind == "hosted" and session.started_by == member.user
    assert session.room_url.endswith(f"/embed/{agent.code}?token=eyJ.fake.token")
    assert fake.sent[0][0] == "embed_token"


def test_with_livekit_set_up_the_start_asks_which_room(org, member, fake):
    LiveKitConfig.objects.create(
        organization=org, url=LIVEKIT_URL, api_key="key", api_secret=LIVEKIT_SECRET
    )
    agent = AgentFactory(organization=org)
    response = client_for(member).post(url("session_start", org, agent.public_id))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'value="hosted"' in html and 'value="livekit"' in html
    assert not AgentSession.objects.exists()


def test_start_for_an_agent_that_is_not_ready_or_past_the_limit_explains(org, member, fake):
    busy = AgentFactory(organization=org, name="Busy", status="generating")
    response = client_for(member).post(url("session_start", org, busy.public_id))
    assert response.status_code == 400
    assert "Busy is not ready yet" in response.content.decode()

    ready = AgentFactory(organization=org)
    fake.error = bh_errors.ConcurrencyLimitError(
        code="CONCURRENCY_LIMIT_REACHED",
        message="Concurrent session limit reached (1 on the free plan)",
        http_status=403,
    )
    response = client_for(member).post(url("session_start", org, ready.public_id))
    assert response.status_code == 400
    assert "limit of concurrent live sessions is reached" in response.content.decode()
    assert not AgentSession.objects.exists()


# --- Speak and add context ----------------------------------------------------------------------


def test_speak_over_htmx_appends_the_event_and_clears_the_box(org, member, session, fake):
    response = client_for(member).post(
        url("session_speak", org, session.public_id), {"message": "Hello there"}, **HTMX
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.startswith('\n<li class="event event-speak outcome-delivered"')
    assert "delivered to 1 room" in html
    assert 'id="speak-form"' in html and 'hx-swap-oob="true"' in html
    assert _textarea(html, "message") == ""
    assert fake.sent == [
        ("speak", {"code": session.agent.code, "message": "Hello there", "room_id": None})
    ]
    assert session.events.get().outcome == EventOutcome.DELIVERED


def test_context_over_htmx_is_sent_as_add_context(org, member, session, fake):
    fake.rooms = 2
    response = client_for(member).post(
        url("session_context", org, session.public_id), {"context": "Visitor: Ada"}, **HTMX
    )
    html = response.content.decode()
    assert "delivered to 2 rooms" in html and 'id="context-form"' in html
    assert fake.sent == [
        (
            "context",
            {
                "code": session.agent.code,
                "context": "Visitor: Ada",
                "context_type": "add_context",
                "room_id": None,
            },
        )
    ]


def test_undelivered_speak_keeps_the_text_and_says_why(org, member, session, fake):
    client = client_for(member)
    fake.error = bh_errors.NoActiveRoomsError(
        code="NOT_FOUND", message=f"No active rooms found for agent {session.agent.code}"
    )
    html = client.post(
        url("session_speak", org, session.public_id), {"message": "Anyone there?"}, **HTMX
    ).content.decode()
    assert "No live room: open the room first" in html
    assert _textarea(html, "message") == "Anyone there?"
    fake.error = bh_errors.RateLimitedError(
        code="RATE_LIMITED", message="Too many requests", http_status=429, retry_after=4.2
    )
    html = client.post(
        url("session_speak", org, session.public_id), {"message": "Quick!"}, **HTMX
    ).content.decode()
    assert "Slow down: retry in 5 s" in html
    assert _textarea(html, "message") == "Quick!"
    # Without htmx the console comes back with the text in the box (no error page).
    page = client.post(url("session_speak", org, session.public_id), {"message": "Plain"})
    assert page.status_code == 200 and _textarea(page.content.decode(), "message") == "Plain"
    outcomes = list(session.events.values_list("text", "outcome"))
    assert outcomes == [
        ("Anyone there?", "no_live_room"),
        ("Quick!", "error"),
        ("Plain", "error"),
    ]


@pytest.mark.parametrize(
    ("name", "field", "text", "error"),
    [
        ("session_speak", "message", "", "Type what the avatar says first."),
        ("session_speak", "message", "   \n  ", "Type what the avatar says first."),
        ("session_speak", "message", "x" * 2001, "limited to 2,000 characters (this has 2001)"),
        ("session_context", "context", "", "Type the context first."),
        ("session_context", "context", "y" * 10_001, "limited to 10,000 characters"),
    ],
)
def test_limits_are_form_errors_and_nothing_is_sent_or_saved(
    org, member, session, fake, name, field, text, error
):
    client = client_for(member)
    path = url(name, org, session.public_id)
    fragment = client.post(path, {field: text}, **HTMX)
    assert fragment.status_code == 422
    assert error in fragment.content.decode()
    assert '<li class="event' not in fragment.content.decode()
    page = client.post(path, {field: text})
    assert page.status_code == 400
    assert error in str(page.context[f"{'speak' if field == 'message' else 'context'}_form"].errors)
    assert fake.sent == []
    assert not SessionEvent.objects.exists()


def test_exactly_at_the_limit_is_sent(org, member, session, fake):
    client_for(member).post(url("session_speak", org, session.public_id), {"message": "x" * 2000})
    # A browser sends line breaks as CRLF; each counts once, as the box's maxlength counts it.
    client_for(member).post(
        url("session_speak", org, session.public_id),
        {"message": ("a" * 9 + "\r\n") * 190 + "z" * 10},  # 2,100 sent, 1,910 typed
    )
    assert [len(body["message"]) for _, body in fake.sent] == [2000, 1910]


def test_an_ended_session_takes_no_more_messages(org, member, session, fake):
    client = client_for(member)
    response = client.post(url("session_end", org, session.public_id), {"confirmed": "yes"})
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.status == "ended"
    html = client.get(url("session_console", org, session.public_id)).content.decode()
    assert "This session has ended" in html
    assert "<iframe" not in html and ">Speak</button>" not in html
    assert 'hx-trigger="every 2s"' not in html  # nothing more to poll for
    response = client.post(url("session_speak", org, session.public_id), {"message": "Hi"}, **HTMX)
    assert response.status_code == 422
    assert "This session has ended" in response.content.decode()
    assert fake.sent == []
    again = client.post(
        url("session_end", org, session.public_id), {"confirmed": "yes"}, follow=True
    )
    assert "This session had already ended." in again.content.decode()


# --- Escaping -----------------------------------------------------------------------------------


def _assert_escaped(html: str) -> None:
    assert "<script>alert" not in html and "<b>bold</b>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in html


def test_html_in_speak_and_context_is_escaped_everywhere(org, member, session, fake):
    client = client_for(member)
    speak = client.post(url("session_speak", org, session.public_id), {"message": PAYLOAD}, **HTMX)
    _assert_escaped(speak.content.decode())
    fake.error = bh_errors.NoActiveRoomsError(code="NOT_FOUND", message="No active rooms")
    context = client.post(
        url("session_context", org, session.public_id), {"context": PAYLOAD}, **HTMX
    )
    html = context.content.decode()
    _assert_escaped(html)
    assert _textarea(html, "context").startswith("&lt;script&gt;")  # kept in the box, escaped

    console = client.get(url("session_console", org, session.public_id))
    _assert_escaped(console.content.decode())
    timeline = client.get(url("session_console", org, session.public_id), **HTMX)
    _assert_escaped(timeline.content.decode())
    assert timeline.content.decode().count("&lt;script&gt;") == 2

    exported = client.get(url("session_export_csv", org, session.public_id))
    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert [row["text"] for row in rows if row["kind"] != "system"] == [PAYLOAD, PAYLOAD]
    assert exported["Content-Type"].startswith("text/csv")
    assert exported["Content-Disposition"].startswith("attachment;")

    raw = client.get(url("session_export_json", org, session.public_id))
    assert raw["Content-Type"].startswith("application/json")
    assert b"<script" not in raw.content and b"<b>" not in raw.content
    events = json.loads(raw.content)["events"]
    assert [e["text"] for e in events if e["kind"] != "system"] == [PAYLOAD, PAYLOAD]

    staff = UserFactory(is_staff=True, is_superuser=True)
    admin_page = client_for(staff).get(
        reverse("admin:agent_sessions_agentsession_change", args=[session.pk])
    )
    assert admin_page.status_code == 200
    _assert_escaped(admin_page.content.decode())


def test_quick_reply_text_is_escaped_in_the_button_and_its_data(org, member, session):
    QuickReplyFactory(organization=org, text='"><script>alert(1)</script>')
    html = client_for(member).get(url("session_console", org, session.public_id)).content.decode()
    assert "<script>alert(1)" not in html
    assert 'data-quick-reply="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html


# --- The console's Content-Security-Policy ------------------------------------------------------


def _policy(response) -> dict[str, list[str]]:
    directives = [d.strip().split() for d in response["Content-Security-Policy"].split(";")]
    return {d[0]: d[1:] for d in directives if d}


def test_console_may_frame_exactly_the_room_hosts_and_keeps_the_rest_of_the_policy(
    org, member, session
):
    client = client_for(member)
    response = client.get(url("session_console", org, session.public_id))
    response_header = response["Content-Security-Policy"]
    console = _policy(response)
    assert console["frame-src"] == [
        "'self'",
        "https://bithuman.ai",
        "https://agent.viewer.bithuman.ai",
        "https://meet.livekit.io",
    ]
    assert console["frame-ancestors"] == ["'none'"]
    assert console["default-src"] == ["'self'"]
    assert console["script-src"][0] == "'self'" and console["script-src"][1].startswith("'nonce-")
    assert "'unsafe-inline'" not in response_header
    # Other pages keep the project's policy.
    assert _policy(client.get(url("session_list", org)))["frame-src"] == ["'self'"]


def test_the_sandbox_room_page_may_be_framed_only_by_the_portal(db):
    response = Client().get("/sandbox/embed/A00NOP0000", {"token": "x"})
    assert _policy(response)["frame-ancestors"] == ["'self'"]


# --- Exports ------------------------------------------------------------------------------------


def test_exports_have_every_event_with_its_outcome(org, viewer, session):
    SessionEventFactory(session=session, kind="system", text="Session started", outcome="")
    SessionEventFactory(session=session, text="=HYPERLINK(1)", delivered_rooms=2)
    SessionEventFactory(
        session=session, kind="context", text="Ada", outcome="no_live_room", delivered_rooms=None
    )
    client = client_for(viewer)
    response = client.get(url("session_export_csv", org, session.public_id))
    assert f'filename="session-{session.agent.code}-' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["kind"], r["text"], r["outcome_label"]) for r in rows] == [
        ("system", "Session started", ""),
        # no formula in a spreadsheet
        ("speak", "'=HYPERLINK(1)", "delivered to 2 rooms (every live room of the agent)"),
        ("context", "Ada", "No live room: open the room first"),
    ]
    data = json.loads(client.get(url("session_export_json", org, session.public_id)).content)
    assert data["session"]["id"] == str(session.public_id)
    assert [e["text"] for e in data["events"]] == ["Session started", "=HYPERLINK(1)", "Ada"]
    assert data["events"][1]["delivered_rooms"] == 2


# --- The list -----------------------------------------------------------------------------------


def test_list_shows_status_agent_starter_duration_and_message_count(org, other_org, viewer, member):
    now = timezone.now()
    ended = AgentSessionFactory(
        agent__organization=org,
        agent__name="Ava",
        started_by=member.user,
        started_at=now - timezone.timedelta(minutes=5, seconds=7),
        ended_at=now,
        status="ended",
    )
    for kind in ["system", "speak", "speak", "context"]:
        SessionEventFactory(session=ended, kind=kind)
    live = AgentSessionFactory(agent__organization=org, agent__name="Bo")
    AgentSessionFactory(agent__organization=other_org, agent__name="Foreign")

    html = client_for(viewer).get(url("session_list", org)).content.decode()
    assert "Foreign" not in html
    row = re.search(rf'<tr id="session-{ended.public_id}">(.*?)</tr>', html, re.S).group(1)
    assert "Ended" in row and "Ava" in row and member.user.get_short_name() in row
    assert '<td data-testid="duration">5 min 07 s</td>' in row
    assert '<td data-testid="message-count">3</td>' in row
    assert f'id="session-{live.public_id}"' in html

    per_agent = client_for(viewer).get(url("session_list", org), {"agent": ended.agent.public_id})
    assert [s.pk for s in per_agent.context["sessions"]] == [ended.pk]
    live_only = client_for(viewer).get(url("session_list", org), {"status": "live"})
    assert [s.pk for s in live_only.context["sessions"]] == [live.pk]
    foreign_agent = AgentFactory(organization=other_org)
    assert (
        client_for(viewer)
        .get(url("session_list", org), {"agent": foreign_agent.public_id})
        .status_code
        == 404
    )


def test_org_home_counts_live_sessions(org, viewer):
    AgentSessionFactory(agent__organization=org)
    AgentSessionFactory(agent__organization=org, status="ended")
    response = client_for(viewer).get(reverse("org_home", args=[org.slug]))
    assert response.context["counts"]["sessions"] == 1


# --- Quick replies ------------------------------------------------------------------------------


def test_quick_replies_are_added_and_deleted_on_the_console(org, member, session):
    client = client_for(member)
    add = url("quick_reply_add", org, session.public_id)
    fragment = client.post(add, {"reply": "Welcome to the museum!"}, **HTMX)
    assert fragment.status_code == 200
    html = fragment.content.decode()
    assert html.lstrip().startswith('<section id="quick-replies"')
    assert 'data-quick-reply="Welcome to the museum!"' in html
    refused = client.post(add, {"reply": ""}, **HTMX)
    assert refused.status_code == 422 and "Type the quick reply first." in refused.content.decode()
    reply = QuickReply.objects.get()
    delete = url("quick_reply_delete", org, session.public_id, reply.public_id)
    assert 'data-quick-reply="' not in client.post(delete, **HTMX).content.decode()
    assert not QuickReply.objects.exists()
    # Without JavaScript: back to the console.
    assert client.post(add, {"reply": "Hi"})["Location"] == url(
        "session_console", org, session.public_id
    )


# --- LiveKit settings ---------------------------------------------------------------------------


def test_livekit_settings_are_a_section_of_the_settings_page_for_admins(
    org, admin, member, settings
):
    settings.WEBHOOK_ALLOW_LOCAL = True  # LIVEKIT_URL's .invalid name resolves nowhere
    client = client_for(admin)
    settings_page = client.get(reverse("org_settings", args=[org.slug])).content.decode()
    assert 'id="livekit"' in settings_page
    assert f'action="{url("livekit_settings", org)}"' in settings_page

    bad = client.post(
        url("livekit_settings", org), {"url": "not a url", "api_key": "k", "api_secret": "s"}
    )
    assert bad.status_code == 400 and "Give the LiveKit server URL" in bad.content.decode()
    assert not LiveKitConfig.objects.exists()

    saved = client.post(
        url("livekit_settings", org),
        {"url": LIVEKIT_URL, "api_key": "APIkey", "api_secret": LIVEKIT_SECRET},
    )
    assert saved["Location"].endswith("/settings/#livekit")
    page = client.get(reverse("org_settings", args=[org.slug])).content.decode()
    assert LIVEKIT_URL in page and "••••cdef" in page and LIVEKIT_SECRET not in page

    for method in ("get", "post"):
        assert getattr(client_for(member), method)(url("livekit_settings", org)).status_code == 403
    client.post(url("livekit_settings", org), {"action": "remove"})
    assert not LiveKitConfig.objects.exists()


# --- Admin --------------------------------------------------------------------------------------


def test_admin_filters_sessions_and_shows_events_read_only_without_the_room_token(org, session):
    SessionEventFactory(session=session, text="Hello from admin test")
    ended = AgentSessionFactory(agent__organization=org, status="ended", kind="livekit")
    staff = client_for(UserFactory(is_staff=True, is_superuser=True))
    changelist = reverse("admin:agent_sessions_agentsession_changelist")
    filtered = staff.get(changelist, {"status__exact": "ended", "kind__exact": "livekit"})
    assert list(filtered.context["cl"].result_list) == [ended]
    assert staff.get(changelist, {"organization__id__exact": org.pk}).status_code == 200
    change = staff.get(reverse("admin:agent_sessions_agentsession_change", args=[session.pk]))
    html = change.content.decode()
    assert "Hello from admin test" in html
    assert "test-token" not in html  # the room link's bearer token is never shown
    assert 'name="events-0-text"' not in html  # read-only inline


def test_livekit_console_links_get_their_own_tokens_and_viewers_only_watch(
    org, member, viewer, livekit_config
):
    import html as html_lib
    from urllib.parse import parse_qs, urlsplit

    import jwt

    session = AgentSessionFactory(
        agent__organization=org,
        kind="livekit",
        room_name="bithuman-room-1",
        livekit_url=LIVEKIT_URL,
        room_url="https://meet.livekit.io/custom?liveKitUrl=x&token=stored",
    )

    def tokens(membership) -> dict[str, dict]:
        page = client_for(membership).get(url("session_console", org, session.public_id))
        found = {}
        for name, pattern in [
            ("frame", r'<iframe id="room-frame" src="([^"]+)"'),
            ("join", r'<code id="join-link"[^>]*>([^<]+)<'),
        ]:
            link = html_lib.unescape(re.search(pattern, page.content.decode()).group(1))
            assert link.startswith("https://meet.livekit.io/custom?liveKitUrl=")
            token = parse_qs(urlsplit(link).query)["token"][0]
            found[name] = jwt.decode(token, LIVEKIT_SECRET, algorithms=["HS256"])
        return found

    operator = tokens(member)
    assert operator["frame"]["sub"] != operator["join"]["sub"]  # one participant per link
    assert operator["frame"]["video"]["room"] == "bithuman-room-1"
    assert operator["frame"]["video"]["canPublish"] is True
    watcher = tokens(viewer)
    assert watcher["frame"]["video"]["canPublish"] is False
    assert watcher["join"]["video"]["canPublish"] is False
