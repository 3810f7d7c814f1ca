"""Transcripts with both voices and the emergency stop (api/runtime-sessions.md), the real client
against the sandbox over HTTP: a visitor talking in the hosted room and the avatar's answers are
the `user` and `assistant` lines of the runtime session; revoke-all stops every live session and
runtime token issuance until a new key is made."""

from __future__ import annotations

import httpx
import pytest

from portal.bithuman import AuthenticationError, BithumanClient
from tests.conformance.conftest import Harness, Tenant
from tests.conformance.test_client_sandbox import agent_ready


def _user_id(client: BithumanClient) -> str:
    user_id = client.account_get().user_id
    assert user_id
    return user_id


def _hosted_room(harness: Harness, client: BithumanClient, code: str) -> tuple[httpx.Client, str]:
    """Open the hosted embed page (its room goes live); return an HTTP client and the token."""
    token = client.embed_token_request(agent_id=code, fingerprint="a1b2c3d4").token
    http = httpx.Client(base_url=f"{harness.base_url}/sandbox", timeout=20)
    assert http.get(f"/embed/{code}", params={"token": token}).status_code == 200
    return http, token


def test_a_visitor_talking_in_the_hosted_room_is_in_the_transcript_with_the_answers(
    harness: Harness, tenant: Tenant, client: BithumanClient
):
    code = agent_ready(client, tenant)
    user_id = _user_id(client)
    http, token = _hosted_room(harness, client, code)
    talked = http.post(f"/embed/{code}/talk", params={"token": token}, data={"text": "Hi there"})
    assert talked.status_code == 200
    assert [m["type"] for m in talked.json()["messages"]] == ["visitor", "answer"]
    (session,) = client.runtime_session_list(user_id=user_id, window="live").sessions
    client.agent_speak(code=code, message="Welcome!", room_id=session.room_name)
    client.agent_context_add(code=code, context="VIP visitor", room_id=session.room_name)
    http.post(f"/embed/{code}/talk", params={"token": token}, data={"text": "Where is my order?"})

    transcript = client.runtime_session_messages(user_id=user_id, session_id=session.id)
    lines = [(m.role, m.message) for m in transcript.messages]
    assert [role for role, _ in lines] == ["user", "assistant", "assistant", "user", "assistant"]
    assert lines[0] == ("user", "Hi there")
    assert "Hi there" in lines[1][1]
    assert lines[2] == ("assistant", "Welcome!")
    assert lines[3] == ("user", "Where is my order?")
    assert "VIP visitor" in lines[4][1]  # the answer knows the context it was given
    stamps = [m.timestamp for m in transcript.messages]
    assert all(stamps) and stamps == sorted(stamps)  # type: ignore[type-var]
    assert client.runtime_session_list(user_id=user_id).sessions[0].has_transcript
    # The page shows both voices too (its poll).
    polled = http.post(f"/embed/{code}/live", params={"token": token}).json()["messages"]
    assert [m["type"] for m in polled][:2] == ["visitor", "answer"]


def test_a_visitor_line_needs_a_valid_token_and_text(
    harness: Harness, tenant: Tenant, client: BithumanClient
):
    code = agent_ready(client, tenant)
    http, token = _hosted_room(harness, client, code)
    empty = http.post(f"/embed/{code}/talk", params={"token": token}, data={"text": "  "})
    assert empty.status_code == 400
    forged = http.post(f"/embed/{code}/talk", params={"token": "x"}, data={"text": "Hi"})
    assert forged.status_code == 401
    rooms = tenant.control.get("/control/rooms").json()["rooms"]
    assert [m for r in rooms for m in r["messages"]] == []


def test_revoke_all_stops_live_sessions_and_runtime_tokens_until_a_new_key(
    harness: Harness, tenant: Tenant, client: BithumanClient
):
    code = agent_ready(client, tenant)
    user_id = _user_id(client)
    client.runtime_token_request(agent_code=code, room_name="lobby")
    _hosted_room(harness, client, code)
    assert client.runtime_session_list(user_id=user_id, window="live").active_count == 2

    answer = client.runtime_revoke_all(user_id=user_id, reason="leaked key")
    assert (answer.revoked, answer.runtime_suspended) == (True, True)
    assert answer.effective_in_seconds is not None and answer.note
    live = client.runtime_session_list(user_id=user_id, window="live")
    assert (live.active_count, live.sessions) == (0, ())
    rooms = tenant.control.get("/control/rooms", params={"all": "1"}).json()["rooms"]
    assert {r["terminated_reason"] for r in rooms} == {"revoke-all: leaked key"}
    with pytest.raises(AuthenticationError):
        client.runtime_token_request(agent_code=code, room_name="again")
    # Keys are not deleted: the secret still works for everything else.
    assert client.account_get().user_id == user_id

    tenant.configure(runtime_suspended=False)  # what creating a new API key does
    client.runtime_token_request(agent_code=code, room_name="again")
    assert client.runtime_session_list(user_id=user_id, window="live").active_count == 1


def test_revoke_all_of_another_account_is_404(harness: Harness, client: BithumanClient):
    other = harness.tenant()
    other_id = _user_id(harness.client(other))
    with pytest.raises(Exception) as raised:
        client.runtime_revoke_all(user_id=other_id)
    assert getattr(raised.value, "http_status", None) == 404
    assert harness.client(other).runtime_session_list(user_id=other_id) is not None
