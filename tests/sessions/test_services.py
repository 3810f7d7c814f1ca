"""Session services against the sandbox over real HTTP: starting hosted and LiveKit rooms,
speak and add-context outcomes (delivered, no live room, agent not found, rate limited),
ending (once), the idle sweep, quick replies and the LiveKit settings."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import unquote

import httpx
import jwt
import pytest
from django.db import connection as db_connection
from django.utils import timezone

from portal.bithuman.client import BithumanClient
from portal.errors import ApplicationError, UpstreamFailed
from portal.models import BithumanConnection, ConnectionMode
from sandbox import services as sandbox_services
from sandbox.models import SandboxLiveKitDispatch, SandboxLiveKitRoom
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
    sandbox_livekit_project,
    sandbox_rooms,
    sandbox_rooms_all,
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
    # Ready in our table, still generating at bitHuman: the token it mints can launch no model.
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
def test_livekit_start_creates_the_room_and_dispatches_the_worker_by_its_agent_name(
    ready_agent, org, member, livekit_config, sent_calls, sandbox_api
):
    project = sandbox_livekit_project(org)
    session = services.session_start(actor=member, agent=ready_agent, kind="livekit")

    # bitHuman is not asked for anything: the worker's AvatarSession brings the avatar.
    assert not [c for c in sent_calls if "runtime-tokens" in c.path]
    # Test mode: the room is in the sandbox's stand-in LiveKit project.
    assert session.livekit_url == project["url"] == f"{sandbox_api}/livekit"
    room = SandboxLiveKitRoom.objects.get(name=session.room_name, deleted_at__isnull=True)
    assert json.loads(room.metadata)["agent_code"] == ready_agent.code
    [dispatch] = room.dispatches.all()
    assert dispatch.agent_name == livekit_config.agent_name == "bithuman-avatar"
    assert json.loads(dispatch.metadata)["agent_code"] == ready_agent.code
    assert dispatch.state == "joined"
    # The avatar's runtime session carries the room's name.
    assert [(r["room_id"], r["kind"]) for r in sandbox_rooms(org)] == [
        (session.room_name, "runtime")
    ]
    # The operator's link opens that room with a viewer token signed by the project's secret.
    assert session.room_url.startswith(f"{sandbox_api}/livekit/meet?liveKitUrl=")
    viewer_token = session.room_url.split("&token=")[1]
    claims = jwt.decode(
        unquote(viewer_token),
        project["api_secret"],
        algorithms=["HS256"],
        issuer=project["api_key"],
    )
    assert claims["video"]["room"] == session.room_name and claims["video"]["roomJoin"]
    assert claims["sub"].startswith("operator-")
    assert session.events.get().text == (
        f"Session started: LiveKit room {session.room_name}, agent bithuman-avatar dispatched"
    )


@sandbox
def test_livekit_in_live_mode_uses_the_organizations_project_and_worker_name(
    ready_agent, org, member, sandbox_api, settings
):
    settings.WEBHOOK_ALLOW_LOCAL = True  # the stand-in project is http:// on this machine
    project = sandbox_livekit_project(org)
    connection = BithumanConnection.objects.get(organization=org)
    connection.mode = ConnectionMode.LIVE
    connection.live_secret = connection.sandbox_secret  # BITHUMAN_API_URL is the sandbox here
    connection.save()
    LiveKitConfig.objects.create(
        organization=org,
        url=project["url"],
        api_key=project["api_key"],
        api_secret=project["api_secret"],
        agent_name="acme-avatar",
    )
    session = services.session_start(actor=member, agent=ready_agent, kind="livekit")
    assert not session.sandbox and session.livekit_url == project["url"]
    assert session.room_url.startswith("https://meet.livekit.io/custom?liveKitUrl=http")
    dispatch = SandboxLiveKitDispatch.objects.get(room__name=session.room_name)
    assert dispatch.agent_name == "acme-avatar"
    event = services.session_speak(actor=member, session=session, text="Live hello")
    assert event.outcome == EventOutcome.DELIVERED and event.room_id == session.room_name
    assert services.session_end(actor=member, session=session)
    assert SandboxLiveKitRoom.objects.get(name=session.room_name).deleted_at is not None


@sandbox
def test_a_livekit_server_that_cannot_be_reached_refuses_the_start_and_saves_nothing(
    ready_agent, org, member, sandbox_api, settings
):
    settings.WEBHOOK_ALLOW_LOCAL = True
    connection = BithumanConnection.objects.get(organization=org)
    connection.mode = ConnectionMode.LIVE
    connection.live_secret = connection.sandbox_secret
    connection.save()
    LiveKitConfig.objects.create(
        organization=org, url="ws://127.0.0.1:9", api_key=LIVEKIT_KEY, api_secret=LIVEKIT_SECRET
    )
    with pytest.raises(UpstreamFailed, match="Could not open the LiveKit room") as caught:
        services.session_start(actor=member, agent=ready_agent, kind="livekit")
    assert "could not be reached" in caught.value.message
    assert LIVEKIT_SECRET not in caught.value.message
    assert not AgentSession.objects.exists()


@sandbox
def test_wrong_livekit_keys_are_refused_by_the_server_and_nothing_is_left(
    ready_agent, org, member, sandbox_api, settings
):
    settings.WEBHOOK_ALLOW_LOCAL = True
    project = sandbox_livekit_project(org)
    connection = BithumanConnection.objects.get(organization=org)
    connection.mode = ConnectionMode.LIVE
    connection.live_secret = connection.sandbox_secret
    connection.save()
    LiveKitConfig.objects.create(
        organization=org, url=project["url"], api_key=project["api_key"], api_secret="wrong" * 8
    )
    with pytest.raises(UpstreamFailed) as caught:
        services.session_start(actor=member, agent=ready_agent, kind="livekit")
    assert "HTTP 401 (unauthenticated)" in caught.value.message
    assert not AgentSession.objects.exists() and not SandboxLiveKitRoom.objects.exists()


@sandbox
def test_livekit_needs_the_organizations_settings(ready_agent, member):
    with pytest.raises(ApplicationError, match="LiveKit is not set up") as caught:
        services.session_start(actor=member, agent=ready_agent, kind="livekit")
    assert caught.value.field == "kind"


@sandbox
def test_past_the_concurrency_limit_the_avatar_cannot_join_and_lines_reach_no_room(
    ready_agent, org, member, livekit_config
):
    sandbox_services.sandbox_account_configure(
        account=org_sandbox_account(org), changes={"plan": "free"}
    )
    first = services.session_start(actor=member, agent=ready_agent, kind="livekit")
    second = services.session_start(actor=member, agent=ready_agent, kind="livekit")
    # The worker took the job, bitHuman refused the second avatar session (plan limit 1).
    dispatch = SandboxLiveKitDispatch.objects.get(room__name=second.room_name)
    assert dispatch.state == "failed" and "CONCURRENCY_LIMIT_REACHED" in dispatch.note
    event = services.session_speak(actor=member, session=second, text="Hello?")
    assert event.outcome == EventOutcome.NO_LIVE_ROOM and event.room_id == second.room_name
    # The first room is not reached by the second session's line.
    assert [r["messages"] for r in sandbox_rooms(org) if r["room_id"] == first.room_name] == [[]]


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
def test_context_is_delivered_as_add_context_to_the_livekit_room(
    ready_agent, org, member, livekit_config
):
    session = services.session_start(actor=member, agent=ready_agent, kind="livekit")
    event = services.session_context_add(
        actor=member, session=session, text="The visitor is called Ada."
    )
    assert event.kind == EventKind.CONTEXT and event.room_id == session.room_name
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
def test_a_livekit_session_in_test_mode_goes_from_start_to_a_spoken_line_to_end(
    ready_agent, org, member, livekit_config, sandbox_api
):
    session = services.session_start(actor=member, agent=ready_agent, kind="livekit")
    other = services.session_start(actor=member, agent=ready_agent, kind="livekit")
    assert len(sandbox_rooms(org)) == 2

    event = services.session_speak(actor=member, session=session, text="Your order ships today.")
    # Sent by room_id from the start: the room's name is ours.
    assert event.room_id == session.room_name
    assert event.outcome == EventOutcome.DELIVERED and event.delivered_rooms == 1
    spoken = {r["room_id"]: r["messages"] for r in sandbox_rooms(org)}
    assert spoken == {
        session.room_name: [{"type": "speak", "text": "Your order ships today."}],
        other.room_name: [],
    }
    # The room link's page (the stand-in for LiveKit Meet) hears it.
    viewer_token = unquote(session.room_url.split("&token=")[1])
    live = httpx.post(
        f"{sandbox_api}/livekit/meet/live", params={"token": viewer_token, "after": 0}, timeout=10
    )
    assert [m["text"] for m in live.json()["messages"]] == ["Your order ships today."]

    assert services.session_end(actor=member, session=session) is True
    assert services.session_end(actor=member, session=session) is False  # compare-and-set
    session.refresh_from_db()
    assert session.status == "ended" and session.end_reason == EndReason.OPERATOR
    texts = list(session.events.values_list("text", flat=True))
    assert texts[-3:] == [
        f"Session ended by {member.user.get_short_name()}",
        f"bitHuman ended the room {session.room_name}: "
        "Session ended — the avatar disconnected and the conversation closed.",
        f"LiveKit room {session.room_name} closed",
    ]
    # The sandbox's own records: the runtime session terminated, the LiveKit room deleted.
    ended = {r["room_id"]: r for r in sandbox_rooms_all(org)}
    assert ended[session.room_name]["ended_at"] is not None
    assert ended[session.room_name]["terminated_reason"] == "ended in bitHuman Portal"
    assert ended[other.room_name]["ended_at"] is None
    assert SandboxLiveKitRoom.objects.get(name=session.room_name).deleted_at is not None
    assert SandboxLiveKitRoom.objects.get(name=other.room_name).deleted_at is None
    with pytest.raises(ApplicationError, match="has ended"):
        services.session_speak(actor=member, session=session, text="Still there?")


@sandbox
def test_a_livekit_room_that_already_closed_or_changed_settings_are_recorded_at_the_end(
    ready_agent, org, member, livekit_config
):
    closed = services.session_start(actor=member, agent=ready_agent, kind="livekit")
    SandboxLiveKitRoom.objects.filter(name=closed.room_name).update(deleted_at=timezone.now())
    assert services.session_end(actor=member, session=closed)
    assert closed.events.filter(text=f"LiveKit room {closed.room_name} had already closed").exists()

    moved = services.session_start(actor=member, agent=ready_agent, kind="livekit")
    livekit_config.delete()  # the organization removed its LiveKit settings meanwhile
    assert services.session_end(actor=member, session=moved)
    moved.refresh_from_db()
    assert moved.status == "ended"
    failure = moved.events.get(text="Could not close the LiveKit room")
    assert failure.kind == EventKind.SYSTEM and failure.outcome == EventOutcome.ERROR
    assert "settings changed since the session started" in failure.error_message


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
