"""Runtime sessions (api/runtime-sessions.md) and room-targeted messages (api/agents.md), the real
client against the sandbox over HTTP; each exchange is checked against openapi.yaml plus the
pages' operations (tests/sandbox/docs_spec.yaml)."""

from __future__ import annotations

import pytest

from portal.bithuman import BithumanClient, NotFoundError
from tests.conformance.conftest import Harness, Tenant
from tests.conformance.test_client_sandbox import agent_ready


def _user_id(client: BithumanClient) -> str:
    user_id = client.account_get().user_id
    assert user_id
    return user_id


def test_rooms_are_listed_as_runtime_sessions_with_minutes_and_kpis(
    tenant: Tenant, client: BithumanClient
):
    code = agent_ready(client, tenant, model="expression-1")
    user_id = _user_id(client)
    client.runtime_token_request(agent_code=code, room_name="lobby")
    client.runtime_token_request(agent_code=code, room_name="hall")

    page = client.runtime_session_list(user_id=user_id, window="live", kind="all", limit=10)
    assert {s.room_name for s in page.sessions} == {"lobby", "hall"}
    assert page.active_count == 2
    assert page.live_burn_rate_cr_per_min == 8.0  # expression-1: 4 credits/min each
    lobby = next(s for s in page.sessions if s.room_name == "lobby")
    assert (lobby.agent_code, lobby.status, lobby.is_live) == (code, "live", True)
    assert lobby.minutes is not None and lobby.minutes >= 0
    assert client.runtime_session_list(user_id=user_id, kind="self_hosted").sessions == ()
    assert len(client.runtime_session_list(user_id=user_id, limit=1).sessions) == 1


def test_terminate_ends_one_session_and_its_room_stops_counting(
    tenant: Tenant, client: BithumanClient
):
    code = agent_ready(client, tenant)
    user_id = _user_id(client)
    client.runtime_token_request(agent_code=code, room_name="lobby")
    client.runtime_token_request(agent_code=code, room_name="hall")
    sessions = client.runtime_session_list(user_id=user_id, window="live").sessions
    lobby = next(s for s in sessions if s.room_name == "lobby")

    ended = client.runtime_session_terminate(
        user_id=user_id, session_id=lobby.id, reason="operator ended it"
    )
    assert (ended.session_id, ended.closed, ended.ended) == (lobby.id, True, True)
    # Harmless twice (the portal retries a terminate whose answer was lost).
    assert client.runtime_session_terminate(user_id=user_id, session_id=lobby.id).ended

    live = client.runtime_session_list(user_id=user_id, window="live")
    assert [s.room_name for s in live.sessions] == ["hall"]
    assert live.active_count == 1
    recent = client.runtime_session_list(user_id=user_id, window="recent").sessions
    assert [(s.room_name, s.status) for s in recent] == [("lobby", "ended")]
    # A closed room is not delivered to: one room counted, not two.
    assert client.agent_speak(code=code, message="Hello").delivered_to_rooms == 1
    rooms = tenant.control.get("/control/rooms", params={"all": "1"}).json()["rooms"]
    lobby_room = next(r for r in rooms if r["room_id"] == "lobby")
    assert lobby_room["ended_at"] and lobby_room["terminated_reason"] == "operator ended it"
    assert lobby_room["messages"] == []


def test_the_transcript_has_what_the_avatar_said(tenant: Tenant, client: BithumanClient):
    code = agent_ready(client, tenant)
    user_id = _user_id(client)
    client.runtime_token_request(agent_code=code, room_name="lobby")
    client.agent_speak(code=code, message="Welcome!", room_id="lobby")
    client.agent_context_add(code=code, context="VIP visitor", room_id="lobby")
    (session,) = client.runtime_session_list(user_id=user_id).sessions
    assert session.has_transcript
    transcript = client.runtime_session_messages(user_id=user_id, session_id=session.id)
    assert transcript.live is True and transcript.session_id == session.id
    assert [(m.role, m.message) for m in transcript.messages] == [("assistant", "Welcome!")]


def test_unknown_and_foreign_sessions_answer_404(harness: Harness, client: BithumanClient):
    other = harness.tenant()
    other_client = harness.client(other)
    code = agent_ready(other_client, other)
    other_client.runtime_token_request(agent_code=code, room_name="theirs")
    other_id = _user_id(other_client)
    (theirs,) = other_client.runtime_session_list(user_id=other_id).sessions
    user_id = _user_id(client)
    for session_id in (theirs.id, "00000000-0000-0000-0000-000000000000", "nope"):
        with pytest.raises(NotFoundError):
            client.runtime_session_terminate(user_id=user_id, session_id=session_id)
        with pytest.raises(NotFoundError):
            client.runtime_session_messages(user_id=user_id, session_id=session_id)
    with pytest.raises(NotFoundError):  # someone else's user id
        client.runtime_session_list(user_id=other_id)
    assert other_client.runtime_session_list(user_id=other_id, window="live").active_count == 1


def test_room_id_targets_one_room_and_a_room_without_worker_is_skipped(
    tenant: Tenant, client: BithumanClient
):
    code = agent_ready(client, tenant)
    client.runtime_token_request(agent_code=code, room_name="lobby")
    client.runtime_token_request(agent_code=code, room_name="hall")
    assert (
        client.agent_speak(code=code, message="Lobby only", room_id="lobby").delivered_to_rooms == 1
    )
    tenant.control.post("/control/rooms/hall/worker", json={"present": False})

    skipped = client.agent_speak(code=code, message="Hall only", room_id="hall")
    assert (skipped.delivered_to_rooms, skipped.rooms_skipped_no_worker) == (0, 1)
    assert skipped.reached_no_one
    both = client.agent_context_add(code=code, context="Both")
    assert (both.delivered_to_rooms, both.rooms_skipped_no_worker) == (1, 1)
    assert both.reached_no_one  # the docs: a non-zero skip count means it reached no one there
    rooms = {r["room_id"]: r for r in tenant.control.get("/control/rooms").json()["rooms"]}
    assert [m["text"] for m in rooms["lobby"]["messages"]] == ["Lobby only", "Both"]
    assert rooms["hall"]["messages"] == []
