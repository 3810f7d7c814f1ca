"""A LiveKit session over REST in Test mode: the room is created in the (sandbox's stand-in)
LiveKit project with the worker dispatched into it, lines go to that room by room_id, End closes
it; another organization's key sees none of it (404)."""

from urllib.parse import unquote

import httpx
import pytest

from sandbox.models import SandboxLiveKitDispatch, SandboxLiveKitRoom
from sessions.models import LiveKitConfig
from tests.api.conftest import ApiClient, make_key
from tests.api.test_agents_api import _envelope
from tests.sessions.conftest import sandbox_rooms, sandbox_rooms_all, upstream_ready_agent

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_livekit_session_over_the_api_starts_speaks_into_its_room_and_ends(
    sandbox_api, org, other_org
):
    agent = upstream_ready_agent(org, name="Ava")
    LiveKitConfig.objects.create(
        organization=org, url="wss://acme.livekit.invalid", api_key="k", api_secret="s" * 32
    )
    api = ApiClient(make_key(org))
    started = api.post(f"/agents/{agent.public_id}/sessions", {"kind": "livekit"})
    assert started.status_code == 201, started.content
    session = started.json()
    assert session["kind"] == "livekit" and session["status"] == "live"
    assert session["join_url"].startswith(sandbox_api + "/livekit/meet?liveKitUrl=")
    room = SandboxLiveKitRoom.objects.get(deleted_at__isnull=True)
    assert SandboxLiveKitDispatch.objects.get(room=room).state == "joined"

    # The join link opens the room: the avatar (the agent's own face) is in it.
    page = httpx.get(session["join_url"], timeout=10)
    assert (page.status_code == 200 and "Ava" in page.text) or agent.name in page.text

    spoken = api.post(f"/sessions/{session['id']}/speak", {"message": "Welcome in"})
    assert spoken.status_code == 201, spoken.content
    assert spoken.json()["outcome"] == "delivered" and spoken.json()["delivered_to_rooms"] == 1
    [live] = sandbox_rooms(org)
    assert live["room_id"] == room.name
    assert live["messages"] == [{"type": "speak", "text": "Welcome in"}]
    token = unquote(session["join_url"].split("&token=")[1])
    heard = httpx.post(
        f"{sandbox_api}/livekit/meet/live", params={"token": token, "after": 0}, timeout=10
    ).json()
    assert [m["text"] for m in heard["messages"]] == ["Welcome in"]

    # Another organization: the same 404 as an unknown session, and nothing changes.
    other = ApiClient(make_key(other_org))
    for response in (
        other.get(f"/sessions/{session['id']}"),
        other.post(f"/sessions/{session['id']}/speak", {"message": "Hijack"}),
        other.post(f"/sessions/{session['id']}/end"),
    ):
        _envelope(response, 404, "not_found")
    assert sandbox_rooms(org)[0]["messages"] == [{"type": "speak", "text": "Welcome in"}]

    ended = api.post(f"/sessions/{session['id']}/end")
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    room.refresh_from_db()
    assert room.deleted_at is not None
    [record] = sandbox_rooms_all(org)
    assert record["ended_at"] and record["terminated_reason"] == "ended in bitHuman Portal"
    events = api.get(f"/sessions/{session['id']}/events").json()["items"]
    assert f"LiveKit room {room.name} closed" in [e["text"] for e in events]


def test_without_livekit_settings_the_api_says_so(sandbox_api, org):
    agent = upstream_ready_agent(org)
    api = ApiClient(make_key(org))
    error = _envelope(
        api.post(f"/agents/{agent.public_id}/sessions", {"kind": "livekit"}), 409, "conflict"
    )
    assert "LiveKit is not set up" in error["message"]
