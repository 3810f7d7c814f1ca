"""The sandbox's stand-in LiveKit project, checked against LiveKit's documented server API with
LiveKit's own client (livekit-api): access tokens and their grants, CreateRoom / DeleteRoom /
ListRooms / CreateDispatch, Twirp errors; the stand-in worker bringing the avatar into the room
as a runtime session; the room link's page. And the hosted room's face: the agent's own image."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from livekit import api as lk

from portal.bithuman import aio
from tests.media import png_bytes


def _project(client) -> dict:
    response = client.get("/control/livekit")
    assert response.status_code == 200, response.text
    return response.json()


def _call(project: dict, action, *, secret: str | None = None):
    async def run():
        server = lk.LiveKitAPI(
            url=project["url"],
            api_key=project["api_key"],
            api_secret=secret or project["api_secret"],
            failover=False,
        )
        try:
            return await action(server)
        finally:
            await server.aclose()

    # aio.run: also when this thread already runs a loop (Playwright's, after a browser test).
    return aio.run(run())


def _dispatch(project: dict, room: str, metadata: dict):
    request = lk.CreateAgentDispatchRequest(
        agent_name="bithuman-avatar", room=room, metadata=json.dumps(metadata)
    )
    return _call(project, lambda s: s.agent_dispatch.create_dispatch(request))


def test_rooms_and_a_dispatch_bring_the_avatar_in_until_the_room_is_deleted(api):
    project = _project(api)
    assert project["url"].endswith("/sandbox/livekit")
    code = api.ready_agent(model="expression-1")
    room = _call(project, lambda s: s.room.create_room(lk.CreateRoomRequest(name="desk-1")))
    assert room.name == "desk-1" and room.sid.startswith("RM_")
    again = _call(project, lambda s: s.room.create_room(lk.CreateRoomRequest(name="desk-1")))
    assert again.sid == room.sid  # CreateRoom answers the open room again

    dispatch = _dispatch(project, "desk-1", {"agent_code": code})
    assert dispatch.id.startswith("AD_") and dispatch.agent_name == "bithuman-avatar"
    assert dispatch.room == "desk-1"
    listed = _call(project, lambda s: s.room.list_rooms(lk.ListRoomsRequest()))
    assert [r.name for r in listed.rooms] == ["desk-1"]
    assert listed.rooms[0].num_participants == 1  # the avatar

    # The avatar's runtime session carries the room's name: speak by room_id reaches it.
    user_id = api.get("/v1/me").json()["data"]["user_id"]
    [session] = api.get(f"/v2/{user_id}/runtime-sessions", params={"window": "live"}).json()[
        "data"
    ]["sessions"]
    assert session["room_name"] == "desk-1" and session["agent_code"] == code
    spoken = api.post(f"/v1/agent/{code}/speak", json={"message": "Hi", "room_id": "desk-1"})
    assert spoken.json()["delivered_to_rooms"] == 1

    _call(project, lambda s: s.room.delete_room(lk.DeleteRoomRequest(room="desk-1")))
    assert (
        api.get(f"/v2/{user_id}/runtime-sessions", params={"window": "live"}).json()["data"][
            "sessions"
        ]
        == []
    )
    gone = api.post(f"/v1/agent/{code}/speak", json={"message": "Hi", "room_id": "desk-1"})
    assert gone.status_code == 404
    with pytest.raises(lk.TwirpError) as missing:
        _call(project, lambda s: s.room.delete_room(lk.DeleteRoomRequest(room="desk-1")))
    assert (missing.value.status, missing.value.code) == (404, "not_found")


def test_a_dispatch_for_an_agent_that_is_not_ready_or_unknown_brings_no_avatar(api):
    project = _project(api)
    pending = api.generate()
    _dispatch(project, "early", {"agent_code": pending})
    _dispatch(project, "nobody", {"agent_code": "A00XYZ0000"})
    _dispatch(project, "empty", {})
    assert api.get("/control/rooms").json()["rooms"] == []
    answer = api.post(f"/v1/agent/{pending}/speak", json={"message": "Hi", "room_id": "early"})
    assert answer.status_code == 404


def test_tokens_are_checked_like_livekit_does(api, sandbox_client):
    project = _project(api)
    with pytest.raises(lk.TwirpError) as wrong:
        _call(
            project,
            lambda s: s.room.create_room(lk.CreateRoomRequest(name="x")),
            secret="not-the-secret-0123456789",
        )
    assert (wrong.value.status, wrong.value.code) == (401, "unauthenticated")

    # Another account's keys do not reach this project's rooms (each project is its own).
    other = _project(sandbox_client())
    _call(project, lambda s: s.room.create_room(lk.CreateRoomRequest(name="mine")))
    theirs = _call(other, lambda s: s.room.list_rooms(lk.ListRoomsRequest()))
    assert list(theirs.rooms) == []

    # A participant token (roomJoin only) may not create rooms: permission_denied.
    viewer = (
        lk.AccessToken(project["api_key"], project["api_secret"])
        .with_identity("v")
        .with_grants(lk.VideoGrants(room_join=True, room="mine"))
        .to_jwt()
    )
    base = project["url"] + "/twirp/livekit.RoomService"
    refused = httpx.post(
        base + "/CreateRoom", json={"name": "y"}, headers={"Authorization": f"Bearer {viewer}"}
    )
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    # JSON bodies work too (Twirp), and unknown methods are a bad_route.
    admin = (
        lk.AccessToken(project["api_key"], project["api_secret"])
        .with_grants(lk.VideoGrants(room_create=True, room_list=True))
        .to_jwt()
    )
    made = httpx.post(
        base + "/CreateRoom",
        json={"name": "json-room"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert made.status_code == 200 and made.json()["name"] == "json-room"
    unknown = httpx.post(base + "/Nope", json={}, headers={"Authorization": f"Bearer {admin}"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "bad_route"
    anonymous = httpx.post(base + "/ListRooms", json={})
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthenticated"


def test_the_room_link_shows_the_avatar_and_what_it_says(api):
    project = _project(api)
    image = "data:image/png;base64," + base64.b64encode(png_bytes(64)).decode()
    code = api.ready_agent(model="expression-1", image=image)
    _dispatch(project, "lobby", {"agent_code": code})
    token = (
        lk.AccessToken(project["api_key"], project["api_secret"])
        .with_identity("operator-1")
        .with_grants(lk.VideoGrants(room_join=True, room="lobby"))
        .to_jwt()
    )
    link = project["room_link_template"].format(url=project["url"], token=token)
    page = httpx.get(link)
    assert page.status_code == 200
    assert f'src="/sandbox/embed/{code}/face"' in page.text  # its own face, not a placeholder
    api.post(f"/v1/agent/{code}/speak", json={"message": "Welcome", "room_id": "lobby"})
    live = httpx.post(project["url"] + "/meet/live", params={"token": token, "after": 0}).json()
    assert live["room_id"] == "lobby" and [m["text"] for m in live["messages"]] == ["Welcome"]
    forged = httpx.get(project["room_link_template"].format(url="x", token=token[:-4] + "AAAA"))
    assert forged.status_code == 401 and "invalid token" in forged.text


def test_the_hosted_room_shows_the_uploaded_face(api):
    face = png_bytes(64)
    code = api.ready_agent(
        model="expression-1", image="data:image/png;base64," + base64.b64encode(face).decode()
    )
    assert api.status(code)["image_url"].endswith(f"/sandbox/embed/{code}/face")
    token = api.post(
        "/v1/embed-tokens/request", json={"agent_id": code, "fingerprint": "f00d"}
    ).json()["data"]["token"]
    page = api.http.get(f"/embed/{code}", params={"token": token})
    assert f'src="/sandbox/embed/{code}/face"' in page.text
    served = api.http.get(f"/embed/{code}/face")
    assert served.headers["content-type"] == "image/png" and served.content == face
    # A prompt-only agent has the generated face.
    plain = api.ready_agent(model="expression-1")
    assert api.http.get(f"/embed/{plain}/face").headers["content-type"] == "image/svg+xml"
