"""Session services against the sandbox over real HTTP: starting hosted and LiveKit rooms,
speak and add-context outcomes (delivered, no live room, agent not found, rate limited),
ending (once), the idle sweep, quick replies and the LiveKit settings."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from django.db import connection as db_connection
from django.utils import timezone

from portal.bithuman.client import BithumanClient
from portal.errors import ApplicationError
from portal.models import BithumanConnection, ConnectionMode
from sandbox import services as sandbox_services
from sessions import fingerprints, services, tasks
from sessions.models import (
    AgentSession,
    EndReason,
    EventKind,
    EventOutcome,
    LiveKitConfig,
    QuickReply,
    SessionEvent,
)
from tests.factories import AgentFactory, AgentSessionFactory, MembershipFactory
from tests.sessions.conftest import (
    LIVEKIT_KEY,
    LIVEKIT_SECRET,
    LIVEKIT_URL,
    org_sandbox_account,
    sandbox_rooms,
)

sandbox = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent_calls(monkeypatch):
    """Every request body the bitHuman client really sends, by path (it still goes out)."""
    calls: list = []
    original = BithumanClient._send

    def spy(self, call):
        calls.append(call)
        return original(self, call)

    monkeypatch.setattr(BithumanClient, "_send", spy)
    return calls


# --- Starting -----------------------------------------------------------------------------------


@sandbox
def test_hosted_start_builds_the_sandbox_embed_link_and_records_the_start(
    ready_agent, org, member, sandbox_api, sent_calls
):
    session = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    assert session.is_live and session.sandbox and session.kind == "hosted"
    assert session.room_url.startswith(f"{sandbox_api}/embed/{ready_agent.code}?token=ey")
    assert session.started_by == member.user
    [call] = [c for c in sent_calls if c.path == "/v1/embed-tokens/request"]
    assert call.json["agent_id"] == ready_agent.code
    # The operator's own stable fingerprint (api/embedding.md), not one per session.
    assert call.json["fingerprint"] == fingerprints.end_user_fingerprint(member)
    [event] = session.events.all()
    assert event.kind == EventKind.SYSTEM and "Session started" in event.text
    # The link is stored encrypted: the bearer token is not readable in the table.
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT room_url FROM agent_sessions_agentsession")
        [(raw,)] = cursor.fetchall()
    assert "token=" not in raw


@sandbox
def test_hosted_start_in_live_mode_links_to_bithuman(ready_agent, org, member):
    connection = BithumanConnection.objects.get(organization=org)
    connection.mode = ConnectionMode.LIVE
    connection.live_secret = connection.sandbox_secret  # BITHUMAN_API_URL is the sandbox here
    connection.save()
    session = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    assert session.room_url.startswith(f"https://bithuman.ai/embed/{ready_agent.code}?token=")
    assert not session.sandbox


@sandbox
def test_start_refuses_an_agent_that_is_not_ready_here_or_upstream(sandbox_api, org, member):
    generating = AgentFactory(organization=org, status="generating", name="Busy")
    with pytest.raises(ApplicationError, match="Busy is not ready yet"):
        services.session_start(actor=member, agent=generating, kind="hosted")
    # Ready in our table, still generating at bitHuman: its 409 becomes a clear message.
    from organizations import connections

    sandbox_services.sandbox_account_configure(
        account=org_sandbox_account(org), changes={"time_scale": 0}
    )
    connection = connections.connection_get(org=org)
    with connections.client_for(connection=connection) as client:
        code = client.agent_generate(prompt="Slow one", model="expression-1").agent_id
    early = AgentFactory(organization=org, code=code, status="ready", name="Early")
    with pytest.raises(ApplicationError, match="bitHuman says Early is not ready"):
        services.session_start(actor=member, agent=early, kind="hosted")
    assert not AgentSession.objects.exists()


@sandbox
def test_viewers_cannot_start(ready_agent, viewer):
    with pytest.raises(ApplicationError):
        services.session_start(actor=viewer, agent=ready_agent, kind="hosted")
    assert not AgentSession.objects.exists()


@sandbox
def test_livekit_start_dispatches_the_avatar_with_a_token_for_that_room(
    ready_agent, org, member, livekit_config, sent_calls
):
    session = services.session_start(actor=member, agent=ready_agent, kind="livekit")

    [call] = [c for c in sent_calls if c.path == "/v1/runtime-tokens/request"]
    body = call.json
    assert body["agent_id"] == ready_agent.code
    assert body["livekit_url"] == LIVEKIT_URL
    assert body["room_name"] == session.room_name
    assert body["model"] == "expression-1"
    claims = jwt.decode(
        body["livekit_token"], LIVEKIT_SECRET, algorithms=["HS256"], issuer=LIVEKIT_KEY
    )
    assert claims["sub"] == "bithuman-avatar-agent"
    assert claims["video"]["roomJoin"] is True
    assert claims["video"]["room"] == session.room_name
    assert claims["exp"] > timezone.now().timestamp()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            body["livekit_token"], "another-secret-that-is-long-enough-0123", algorithms=["HS256"]
        )

    # The sandbox registered the LiveKit room the avatar joined.
    rooms = sandbox_rooms(org)
    assert [(r["room_id"], r["kind"]) for r in rooms] == [(session.room_name, "runtime")]

    # The operator's link is LiveKit Meet's custom-server link with its own identity.
    assert session.room_url.startswith(
        "https://meet.livekit.io/custom?liveKitUrl=wss%3A%2F%2Fportal-test.livekit.invalid&token="
    )
    viewer_token = session.room_url.split("&token=")[1]
    viewer_claims = jwt.decode(viewer_token, LIVEKIT_SECRET, algorithms=["HS256"])
    assert viewer_claims["video"]["room"] == session.room_name
    assert viewer_claims["sub"] != "bithuman-avatar-agent"
    assert session.livekit_url == LIVEKIT_URL


@sandbox
def test_livekit_needs_the_organizations_settings(ready_agent, member):
    with pytest.raises(ApplicationError, match="LiveKit is not set up") as caught:
        services.session_start(actor=member, agent=ready_agent, kind="livekit")
    assert caught.value.field == "kind"


@sandbox
def test_past_the_concurrency_limit_the_start_says_so(ready_agent, org, member, livekit_config):
    sandbox_services.sandbox_account_configure(
        account=org_sandbox_account(org), changes={"plan": "free"}
    )
    services.session_start(actor=member, agent=ready_agent, kind="livekit")
    with pytest.raises(ApplicationError, match="limit of concurrent live sessions"):
        services.session_start(actor=member, agent=ready_agent, kind="livekit")
    assert AgentSession.objects.count() == 1


# --- Speak and add context ----------------------------------------------------------------------


@sandbox
def test_speak_is_delivered_to_the_open_embed_room(ready_agent, org, member, heartbeat):
    session = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    heartbeat(session)  # the embed page is open: a live room exists
    before = session.last_activity_at
    event = services.session_speak(actor=member, session=session, text="  Hello there  ")
    assert event.kind == EventKind.SPEAK
    assert event.outcome == EventOutcome.DELIVERED and event.delivered_rooms == 1
    assert event.text == "Hello there"
    # bitHuman listed the open page's room: the line went to it by room_id, and only to it.
    session.refresh_from_db()
    assert session.is_linked and event.room_id == session.upstream_room_name
    assert event.outcome_label == "delivered to this session's room"
    assert event.author == member.user
    # The open page receives it on its next poll.
    messages = heartbeat(session)["messages"]
    assert [(m["type"], m["text"]) for m in messages] == [("speak", "Hello there")]
    session.refresh_from_db()
    assert session.last_activity_at > before


@sandbox
def test_context_is_delivered_as_add_context(ready_agent, org, member, livekit_config):
    session = services.session_start(actor=member, agent=ready_agent, kind="livekit")
    event = services.session_context_add(
        actor=member, session=session, text="The visitor is called Ada."
    )
    assert event.kind == EventKind.CONTEXT
    assert event.outcome == EventOutcome.DELIVERED and event.delivered_rooms == 1
    [room] = sandbox_rooms(org)
    assert room["messages"] == [{"type": "add_context", "text": "The visitor is called Ada."}]


@sandbox
def test_with_no_live_room_the_message_is_kept_with_that_outcome(ready_agent, member):
    session = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    # Nobody opened the embed page: bitHuman has no room for this agent.
    event = services.session_speak(actor=member, session=session, text="Anyone there?")
    assert event.pk is not None
    assert event.outcome == EventOutcome.NO_LIVE_ROOM
    assert event.delivered_rooms is None
    assert event.outcome_label == "No live room: open the room first"
    assert event.error_message.startswith("No active rooms found for agent")
    assert SessionEvent.objects.filter(text="Anyone there?").count() == 1


@sandbox
def test_an_agent_bithuman_does_not_know_is_an_error_not_no_room(sandbox_api, org, member):
    stranger = AgentFactory(organization=org, code="A00NOP0000", status="ready")
    session = AgentSessionFactory(agent=stranger)
    event = services.session_speak(actor=member, session=session, text="Hello?")
    assert event.outcome == EventOutcome.ERROR
    assert event.error_code == "NOT_FOUND"
    assert "does not know agent A00NOP0000" in event.outcome_label
    assert "Agent not found for code" in event.error_message


@sandbox
def test_rate_limit_is_recorded_as_slow_down_with_the_wait(
    ready_agent, org, member, heartbeat, settings, sent_calls
):
    session = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    heartbeat(session)
    settings.SANDBOX_FORCED_RETRY_AFTER = 7
    sandbox_services.sandbox_account_configure(
        account=org_sandbox_account(org), changes={"force_429_rate": 1.0}
    )
    sent_before = len(sent_calls)
    event = services.session_speak(actor=member, session=session, text="Too fast")
    assert event.outcome == EventOutcome.ERROR
    assert event.is_rate_limited and event.retry_after_seconds == 7
    assert event.outcome_label == "Slow down: retry in 7 s"
    speaks = [c for c in sent_calls[sent_before:] if c.path.endswith("/speak")]
    assert len(speaks) == 1  # shown at once, not retried behind the operator


@sandbox
def test_limits_refuse_before_anything_is_sent_or_saved(ready_agent, member, sent_calls):
    session = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    sent = len(sent_calls)
    for kind, text, field in [
        ("speak", "   ", "message"),
        ("speak", "x" * 2001, "message"),
        ("context", "", "context"),
        ("context", "y" * 10_001, "context"),
    ]:
        deliver = services.session_speak if kind == "speak" else services.session_context_add
        with pytest.raises(ApplicationError) as caught:
            deliver(actor=member, session=session, text=text)
        assert caught.value.field == field
    assert len(sent_calls) == sent
    assert session.events.exclude(kind=EventKind.SYSTEM).count() == 0
    # Exactly at the limits is fine.
    assert services.session_speak(actor=member, session=session, text="x" * 2000).pk
    assert services.session_context_add(actor=member, session=session, text="y" * 10_000).pk


@sandbox
def test_viewers_cannot_speak_or_add_context(ready_agent, member, viewer):
    session = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    with pytest.raises(ApplicationError):
        services.session_speak(actor=viewer, session=session, text="Hi")
    with pytest.raises(ApplicationError):
        services.session_context_add(actor=viewer, session=session, text="Hi")
    assert session.events.count() == 1


# --- Ending -------------------------------------------------------------------------------------


@sandbox
def test_ending_a_livekit_session_closes_its_sandbox_room_once(
    ready_agent, org, member, livekit_config
):
    session = services.session_start(actor=member, agent=ready_agent, kind="livekit")
    assert len(sandbox_rooms(org)) == 1
    assert services.session_end(actor=member, session=session) is True
    assert services.session_end(actor=member, session=session) is False  # compare-and-set
    session.refresh_from_db()
    assert session.status == "ended" and session.end_reason == EndReason.OPERATOR
    assert session.ended_by == member.user and session.ended_at is not None
    assert sandbox_rooms(org) == []
    texts = list(session.events.values_list("text", flat=True))
    assert texts[1:] == [
        f"Session ended by {member.user.get_short_name()}",
        f"Room connected: bitHuman lists it as {session.room_name}",
        f"bitHuman ended the room {session.room_name}: "
        "Session ended — the avatar disconnected and the conversation closed.",
        # In the sandbox the LiveKit room and bitHuman's session are one record.
        f"LiveKit room {session.room_name} had already closed",
    ]
    with pytest.raises(ApplicationError, match="has ended"):
        services.session_speak(actor=member, session=session, text="Still there?")


@sandbox
def test_a_livekit_server_that_cannot_be_reached_is_recorded_and_the_session_still_ends(
    ready_agent, org, member
):
    connection = BithumanConnection.objects.get(organization=org)
    connection.mode = ConnectionMode.LIVE
    connection.live_secret = connection.sandbox_secret
    connection.save()
    LiveKitConfig.objects.create(
        organization=org, url="ws://127.0.0.1:9", api_key=LIVEKIT_KEY, api_secret=LIVEKIT_SECRET
    )
    session = services.session_start(actor=member, agent=ready_agent, kind="livekit")
    assert services.session_end(actor=member, session=session) is True
    session.refresh_from_db()
    assert session.status == "ended"
    failure = session.events.get(text="Could not close the LiveKit room")
    assert failure.kind == EventKind.SYSTEM and failure.outcome == EventOutcome.ERROR
    assert f"LiveKit did not close room {session.room_name}" in failure.error_message
    assert LIVEKIT_SECRET not in failure.error_message


@pytest.mark.django_db
def test_idle_sessions_are_ended_by_the_task_with_that_reason(org, settings):
    settings.SESSION_IDLE_MINUTES = 10
    now = timezone.now()
    idle = AgentSessionFactory(
        agent__organization=org, last_activity_at=now - timedelta(minutes=11)
    )
    busy = AgentSessionFactory(agent__organization=org, last_activity_at=now - timedelta(minutes=9))
    done = AgentSessionFactory(
        agent__organization=org,
        status="ended",
        ended_at=now - timedelta(hours=1),
        last_activity_at=now - timedelta(hours=2),
    )
    assert tasks.sessions_end_idle.delay().get() == 1
    for session in (idle, busy, done):
        session.refresh_from_db()
    assert idle.status == "ended" and idle.end_reason == EndReason.IDLE and idle.ended_by is None
    assert busy.status == "live"
    assert done.end_reason == ""  # already ended: untouched
    # No bitHuman answers in this test: ending it upstream failed, is shown and will be retried.
    assert list(idle.events.values_list("text", flat=True)) == [
        "Session ended: idle for more than 10 minutes",
        "Could not end the room at bitHuman; retrying",
    ]
    assert idle.upstream_end_attempts == 1 and idle.upstream_end_error
    assert services.sessions_end_idle() == 0


@pytest.mark.django_db
def test_the_idle_sweep_is_scheduled(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["sessions-end-idle"]
    assert entry["task"] == "sessions.tasks.sessions_end_idle"
    assert entry["task"] == tasks.sessions_end_idle.name


# --- Quick replies and LiveKit settings ---------------------------------------------------------


@pytest.mark.django_db
def test_quick_replies_are_per_organization_and_saved_once(org, other_org, member, viewer):
    first = services.quick_reply_create(actor=member, text="  Welcome to the museum!  ")
    again = services.quick_reply_create(actor=member, text="Welcome to the museum!")
    assert first.pk == again.pk and first.text == "Welcome to the museum!"
    other = MembershipFactory(organization=other_org, role="member")
    services.quick_reply_create(actor=other, text="Welcome to the museum!")
    assert QuickReply.objects.for_org(org).count() == 1
    with pytest.raises(ApplicationError):
        services.quick_reply_create(actor=viewer, text="Nope")
    with pytest.raises(ApplicationError):
        services.quick_reply_create(actor=member, text="z" * 501)
    services.quick_reply_delete(actor=member, reply=first)
    assert QuickReply.objects.for_org(org).count() == 0
    assert QuickReply.objects.for_org(other_org).count() == 1


@pytest.mark.django_db
def test_livekit_settings_are_admin_only_encrypted_and_keep_the_secret_when_blank(
    org, admin, member, settings
):
    settings.WEBHOOK_ALLOW_LOCAL = True  # LIVEKIT_URL's .invalid name resolves nowhere
    with pytest.raises(ApplicationError):
        services.livekit_config_save(
            actor=member, url=LIVEKIT_URL, api_key="k", api_secret="s" * 20
        )
    with pytest.raises(ApplicationError) as caught:
        services.livekit_config_save(actor=admin, url="ftp://x", api_key="k", api_secret="s")
    assert caught.value.field == "url"
    with pytest.raises(ApplicationError) as caught:
        services.livekit_config_save(actor=admin, url=LIVEKIT_URL, api_key="k", api_secret="")
    assert caught.value.field == "api_secret"

    config = services.livekit_config_save(
        actor=admin, url=LIVEKIT_URL + "/", api_key=" key1 ", api_secret=LIVEKIT_SECRET
    )
    assert (config.url, config.api_key) == (LIVEKIT_URL, "key1")
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT api_secret FROM agent_sessions_livekitconfig")
        [(raw,)] = cursor.fetchall()
    assert LIVEKIT_SECRET not in raw
    services.livekit_config_save(actor=admin, url=LIVEKIT_URL, api_key="key2", api_secret="")
    config.refresh_from_db()
    assert config.api_key == "key2" and config.api_secret == LIVEKIT_SECRET
    assert config.api_secret_masked == "••••cdef"
    services.livekit_config_delete(actor=admin)
    assert not LiveKitConfig.objects.exists()
