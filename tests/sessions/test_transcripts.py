"""Transcripts (issue 15 item 5) and the end user's fingerprint (item 6), against the sandbox over
HTTP: a visitor talks in the hosted room, the avatar answers, and both land in the portal's
timeline, exports, API and webhooks, merged by time with the operator's lines, once each."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.test import override_settings

from activity.models import OutboundDelivery, WebhookEndpoint
from agents import ratelimit, readbudget
from organizations import connections
from sessions import fingerprints, services, transcripts, upstream
from sessions.models import AgentSession, EventKind
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db(transaction=True)


def visitor_says(session: AgentSession, text: str) -> None:
    """What a visitor typing in the hosted room's box does (it stands in for the microphone)."""
    parts = urlsplit(session.room_url)
    url = f"{parts.scheme}://{parts.netloc}{parts.path}/talk?{parts.query}"
    response = httpx.post(url, data={"text": text}, timeout=10)
    assert response.status_code == 200, response.text


def _linked_session(member, agent, heartbeat) -> AgentSession:
    session = services.session_start(actor=member, agent=agent, kind="hosted")
    heartbeat(session)
    assert upstream.pending_sessions_link() == 1
    session.refresh_from_db()
    return session


def _lines(session: AgentSession) -> list[tuple[str, str]]:
    return [
        (e.kind, e.text)
        for e in session.events.exclude(kind=EventKind.SYSTEM).order_by("created_at", "id")
    ]


def test_visitor_and_avatar_lines_join_the_timeline_once_merged_with_the_operators(
    ready_agent, org, member, heartbeat
):
    endpoint = WebhookEndpoint.objects.create(
        organization=org, url="https://hooks.example.com/x", events=["session.message"], secret="s"
    )
    session = _linked_session(member, ready_agent, heartbeat)
    visitor_says(session, "Hi, is the museum open today?")
    services.session_speak(actor=member, session=session, text="Yes, until 6 pm.")
    visitor_says(session, "Thanks!")

    assert transcripts.transcripts_pull_due() == 5  # the beat's pull
    lines = _lines(session)
    assert [kind for kind, _ in lines] == [
        "visitor",
        "avatar",
        "speak",
        "avatar",
        "visitor",
        "avatar",
    ]
    assert lines[0] == ("visitor", "Hi, is the museum open today?")
    assert "Hi, is the museum open today?" in lines[1][1]
    assert lines[2:4] == [("speak", "Yes, until 6 pm."), ("avatar", "Yes, until 6 pm.")]
    assert lines[4] == ("visitor", "Thanks!")

    # Pulled again (by the beat, a page, an export): nothing twice, no second webhook.
    from django.core.cache import cache

    cache.clear()
    assert transcripts.transcript_pull(session) == 0
    assert len(_lines(session)) == 6
    sent = OutboundDelivery.objects.filter(endpoint=endpoint, event_type="session.message")
    bodies = [json.loads(d.body)["data"] for d in sent]
    kinds = sorted(body["kind"] for body in bodies)
    assert kinds == ["avatar", "avatar", "avatar", "speak", "visitor", "visitor"]
    visitor = next(b for b in bodies if b["kind"] == "visitor" and b["text"] == "Thanks!")
    assert visitor["session_id"] == str(session.public_id)

    # The timeline, the exports and the API show them.
    base = f"/o/{org.slug}/sessions/{session.public_id}/"
    page = client_for(member).get(base, headers={"HX-Request": "true"}).content.decode()
    assert "Hi, is the museum open today?" in page and 'data-kind="visitor"' in page
    assert 'data-kind="avatar"' in page
    rows = list(
        csv.DictReader(io.StringIO(client_for(member).get(base + "timeline.csv").content.decode()))
    )
    assert [r["kind"] for r in rows if r["kind"] in ("visitor", "avatar")] == [
        "visitor",
        "avatar",
        "avatar",
        "visitor",
        "avatar",
    ]
    exported = json.loads(client_for(member).get(base + "timeline.json").content)
    assert ("visitor", "Thanks!") in [(e["kind"], e["text"]) for e in exported["events"]]
    api = ApiClient(make_key(org, scopes=["sessions:read"]))
    items = api.get(f"/sessions/{session.public_id}/events").json()["items"]
    assert [i["kind"] for i in items if i["kind"] in ("visitor", "avatar")] == [
        "visitor",
        "avatar",
        "avatar",
        "visitor",
        "avatar",
    ]


def test_lines_said_just_before_the_end_arrive_with_the_pull_after_it(
    ready_agent, org, member, heartbeat
):
    session = _linked_session(member, ready_agent, heartbeat)
    visitor_says(session, "One last question")
    services.session_end(actor=member, session=session)  # the final pull runs after commit

    session.refresh_from_db()
    assert session.transcript_final_at is not None
    assert [k for k, _ in _lines(session)] == ["visitor", "avatar"]
    # Complete: the beat leaves it alone from now on.
    assert transcripts.transcripts_pull_due() == 0
    assert transcripts.transcript_pull_throttled(session) is None


def test_a_pull_waits_when_the_accounts_read_budget_is_deferred(
    ready_agent, org, member, heartbeat
):
    session = _linked_session(member, ready_agent, heartbeat)
    visitor_says(session, "Hello?")
    connection = connections.connection_get(org=org)
    ratelimit.account_defer(key=readbudget.account_of(connection), seconds=60)

    assert transcripts.transcript_pull(session) is None
    assert _lines(session) == []
    session.refresh_from_db()
    assert session.transcript_pulled_at is None  # it will be tried again


def test_an_unlinked_session_is_not_pulled(ready_agent, org, member):
    session = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    assert transcripts.transcript_pull(session) is None
    assert transcripts.transcripts_pull_due() == 0


def _token_claims(session: AgentSession) -> dict:
    token = parse_qs(urlsplit(session.room_url).query)["token"][0]
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_the_embed_fingerprint_is_the_operators_own_stable_and_not_their_email(
    ready_agent, org, member
):
    first = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    second = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    colleague = MembershipFactory(organization=org, role="member")
    theirs = services.session_start(actor=colleague, agent=ready_agent, kind="hosted")

    mine = _token_claims(first)["fp"]
    assert _token_claims(second)["fp"] == mine  # reused across their sessions
    assert _token_claims(theirs)["fp"] != mine  # one per end user
    assert len(mine) == 32 and int(mine, 16) >= 0  # hex, as the docs ask
    email = member.user.email
    assert email.split("@")[0].lower() not in mine
    guessable = {
        hashlib.sha256(value.encode()).hexdigest()[:32]
        for value in (email, email.lower(), str(member.user.pk), f"user:{member.user.pk}")
    } | {hashlib.md5(email.encode()).hexdigest()}  # noqa: S324 (what a guesser would try)
    assert mine not in guessable
    assert mine != first.public_id.hex
    # Keyed by the secret key: another deployment's value for the same user differs.
    with override_settings(SECRET_KEY="another-deployments-secret-key-0123456789"):
        assert fingerprints.end_user_fingerprint(member) != mine
    assert fingerprints.end_user_fingerprint(member) == mine
