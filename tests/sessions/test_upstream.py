"""Sessions and bitHuman's runtime sessions, against the sandbox over HTTP: linking a session to
its room, messages reaching only that room, outcomes that reached no one, and ending upstream by
button, API and idle sweep (with retries when bitHuman fails)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from organizations import connections
from sandbox import services as sandbox_services
from sessions import services, tasks, upstream
from sessions.models import AgentSession, EventOutcome
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.factories import MembershipFactory
from tests.sessions.conftest import org_sandbox_account, sandbox_rooms

pytestmark = pytest.mark.django_db(transaction=True)


def _all_rooms(org) -> dict[str, dict]:
    """Every sandbox room of the org's account, ended ones too, by room name."""
    connection = connections.connection_get(org=org)
    response = httpx.get(
        f"{settings.SANDBOX_BASE_URL}/control/rooms",
        params={"all": "1"},
        headers={"api-secret": connection.sandbox_secret},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return {room["room_id"]: room for room in response.json()["rooms"]}


def _worker_leaves(org, room_id: str) -> None:
    connection = connections.connection_get(org=org)
    response = httpx.post(
        f"{settings.SANDBOX_BASE_URL}/control/rooms/{room_id}/worker",
        json={"present": False},
        headers={"api-secret": connection.sandbox_secret},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def _console(member, session: AgentSession) -> str:
    url = f"/o/{session.organization.slug}/sessions/{session.public_id}/"
    response = client_for(member).get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    return response.content.decode()


def test_two_operators_in_two_sessions_of_one_agent_each_reach_only_their_own_room(
    ready_agent, org, member, heartbeat
):
    other = MembershipFactory(organization=org, role="member")
    mine = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    theirs = services.session_start(actor=other, agent=ready_agent, kind="hosted")
    heartbeat(mine)
    heartbeat(theirs)
    assert upstream.pending_sessions_link() == 2  # the beat links both as soon as they are listed

    for _ in range(2):
        services.session_speak(actor=member, session=mine, text="Your order ships tomorrow.")
        services.session_speak(actor=other, session=theirs, text="Your refund is on its way.")
    services.session_context_add(actor=member, session=mine, text="Visitor is Ada")

    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.upstream_room_name != theirs.upstream_room_name
    rooms = {room["room_id"]: room for room in sandbox_rooms(org)}
    assert [m["text"] for m in rooms[mine.upstream_room_name]["messages"]] == [
        "Your order ships tomorrow.",
        "Your order ships tomorrow.",
        "Visitor is Ada",
    ]
    assert [m["text"] for m in rooms[theirs.upstream_room_name]["messages"]] == [
        "Your refund is on its way.",
        "Your refund is on its way.",
    ]
    event = mine.events.filter(kind="speak").last()
    assert event.room_id == mine.upstream_room_name
    assert event.outcome_label == "delivered to this session's room"
    assert "Room connected" in _console(member, mine)


def test_until_bithuman_lists_the_room_the_console_says_lines_go_to_every_room(
    ready_agent, org, member, heartbeat
):
    elsewhere = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    heartbeat(elsewhere)  # someone else's open room of the same agent
    session = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    html = _console(member, session)  # this page was never opened: nothing to link
    assert "Room not connected yet" in html
    assert "goes to every live room of Ava (1 right now)" in html
    session.refresh_from_db()
    assert not session.is_linked

    cache_key = f"sessions:link-try:{session.pk}"
    from django.core.cache import cache

    cache.delete(cache_key)
    event = services.session_speak(actor=member, session=session, text="Hello all")
    assert event.room_id == "" and event.outcome == EventOutcome.DELIVERED
    assert event.outcome_label == "delivered to 1 room (every live room of the agent)"


def test_a_room_without_an_avatar_worker_reached_no_one(ready_agent, org, member, heartbeat):
    session = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    heartbeat(session)
    upstream.pending_sessions_link()
    session.refresh_from_db()
    _worker_leaves(org, session.upstream_room_name)

    event = services.session_speak(actor=member, session=session, text="Hello?")
    assert event.outcome == EventOutcome.REACHED_NO_ONE
    assert (event.delivered_rooms, event.skipped_rooms) == (0, 1)
    assert event.outcome_label == "Reached no one: 1 room had no avatar worker"
    api = ApiClient(make_key(org))
    answer = api.post(f"/sessions/{session.public_id}/speak", {"message": "Still?"})
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "reached_no_one"


def _linked_session(ready_agent, member, heartbeat) -> AgentSession:
    session = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    heartbeat(session)
    upstream.pending_sessions_link()
    session.refresh_from_db()
    assert session.is_linked
    return session


def _assert_ended_upstream(org, session: AgentSession) -> None:
    session.refresh_from_db()
    assert session.status == "ended" and session.upstream_ended_at is not None
    assert "Session ended" in session.upstream_end_note
    room = _all_rooms(org)[session.upstream_room_name]
    assert room["ended_at"] and room["terminated_reason"] == upstream.END_REASON
    assert session.upstream_room_name not in {r["room_id"] for r in sandbox_rooms(org)}


def test_end_by_button_terminates_the_upstream_session(ready_agent, org, member, heartbeat):
    session = _linked_session(ready_agent, member, heartbeat)
    url = f"/o/{org.slug}/sessions/{session.public_id}/end/"
    client = client_for(member)
    assert client.post(url).status_code == 200  # the confirmation page, nothing ended
    assert AgentSession.objects.get(pk=session.pk).is_live
    client.post(url, {"confirmed": "yes"})
    _assert_ended_upstream(org, session)
    assert "bitHuman ended the room" in client.get(url.removesuffix("end/")).content.decode()


def test_end_through_the_api_terminates_the_upstream_session(ready_agent, org, member, heartbeat):
    session = _linked_session(ready_agent, member, heartbeat)
    answer = ApiClient(make_key(org)).post(f"/sessions/{session.public_id}/end")
    assert answer.status_code == 200
    assert answer.json()["runtime_session_id"] == session.upstream_session_id
    assert answer.json()["runtime_ended_at"]
    _assert_ended_upstream(org, session)


def test_the_idle_sweep_terminates_the_upstream_session(
    ready_agent, org, member, heartbeat, settings
):
    session = _linked_session(ready_agent, member, heartbeat)
    AgentSession.objects.filter(pk=session.pk).update(
        last_activity_at=timezone.now() - timedelta(minutes=settings.SESSION_IDLE_MINUTES + 1)
    )
    assert tasks.sessions_end_idle.delay().get() == 1
    _assert_ended_upstream(org, session)


def test_a_failed_terminate_is_shown_and_retried_until_bithuman_answers(
    ready_agent, org, member, heartbeat
):
    session = _linked_session(ready_agent, member, heartbeat)
    account = org_sandbox_account(org)
    sandbox_services.sandbox_account_configure(account=account, changes={"error_rate": 1.0})
    services.session_end(actor=member, session=session)
    session.refresh_from_db()
    assert session.status == "ended" and session.upstream_ended_at is None
    # Tests run Celery eagerly: the retry task already ran once too, and failed as well.
    assert session.upstream_end_attempts >= 1 and session.upstream_end_pending
    assert "has not confirmed that the room ended" in _console(member, session)
    assert session.upstream_room_name in {r["room_id"] for r in sandbox_rooms(org)}

    sandbox_services.sandbox_account_configure(account=account, changes={"error_rate": 0.0})
    assert tasks.session_upstream_end.delay(session.pk).get() is True
    _assert_ended_upstream(org, session)
    assert upstream.upstream_ends_sweep() == 0  # nothing left to retry
