"""Live rooms: embed and runtime tokens register rooms; speak and add-context deliver to them,
or answer the two different 404s."""

import time

import pytest
from django.utils import timezone

from sandbox import tokens
from sandbox.models import SandboxRoom

pytestmark = pytest.mark.django_db(transaction=True)


def _runtime_room(client, agent_id, room_name="support-room"):
    response = client.post(
        "/v1/runtime-tokens/request", json={"agent_code": agent_id, "room_name": room_name}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_speak_without_a_live_room(api):
    agent_id = api.ready_agent()
    response = api.post(f"/v1/agent/{agent_id}/speak", json={"message": "Hello"})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "NOT_FOUND",
        "message": f"No active rooms found for agent {agent_id}",
        "httpStatus": 404,
    }
    response = api.post(f"/v1/agent/{agent_id}/add-context", json={"context": "VIP"})
    assert response.json()["error"]["message"] == f"No active rooms found for agent {agent_id}"


def test_speak_to_an_unknown_agent(api):
    response = api.post("/v1/agent/A00XXX0000/speak", json={"message": "Hello"})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Agent not found for code: A00XXX0000"


def test_runtime_token_registers_a_room_that_receives_speech_and_context(api):
    agent_id = api.ready_agent()
    body = _runtime_room(api, agent_id)
    assert body["status"] == "success"
    assert body["status_code"] == 200
    assert tokens.token_decode(token=body["data"]["token"])["room"] == "support-room"
    response = api.post(f"/v1/agent/{agent_id}/speak", json={"message": "Welcome!"})
    assert response.json() == {
        "agent_code": agent_id,
        "context_type": "speak",
        "delivered_to_rooms": 1,
    }
    response = api.post(f"/v1/agent/{agent_id}/add-context", json={"context": "Premium buyer"})
    assert response.json() == {
        "agent_code": agent_id,
        "context_type": "add_context",
        "delivered_to_rooms": 1,
    }
    response = api.post(
        f"/v1/agent/{agent_id}/add-context", json={"context": "Say hi", "type": "speak"}
    )
    assert response.json()["context_type"] == "speak"
    rooms = api.get("/control/rooms").json()["rooms"]
    assert [r["room_id"] for r in rooms] == ["support-room"]
    assert rooms[0]["kind"] == "runtime"
    assert rooms[0]["messages"] == [
        {"type": "speak", "text": "Welcome!"},
        {"type": "add_context", "text": "Premium buyer"},
        {"type": "speak", "text": "Say hi"},
    ]


def test_delivery_to_every_room_or_one_room(api):
    agent_id = api.ready_agent()
    _runtime_room(api, agent_id, "room-a")
    _runtime_room(api, agent_id, "room-b")
    everywhere = api.post(f"/v1/agent/{agent_id}/speak", json={"message": "All"})
    assert everywhere.json()["delivered_to_rooms"] == 2
    one = api.post(f"/v1/agent/{agent_id}/speak", json={"message": "B", "room_id": "room-b"})
    assert one.json()["delivered_to_rooms"] == 1
    missing = api.post(f"/v1/agent/{agent_id}/speak", json={"message": "?", "room_id": "nope"})
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == f"No active rooms found for agent {agent_id}"


def test_ending_a_runtime_room(api):
    agent_id = api.ready_agent()
    _runtime_room(api, agent_id)
    assert api.post("/control/rooms/support-room/end").json() == {
        "room_id": "support-room",
        "ended": True,
    }
    assert api.post("/control/rooms/support-room/end").status_code == 404
    response = api.post(f"/v1/agent/{agent_id}/speak", json={"message": "Anyone?"})
    assert response.status_code == 404
    assert "No active rooms" in response.json()["error"]["message"]


def test_runtime_rooms_lapse_after_their_ttl(api, settings):
    settings.SANDBOX_RUNTIME_ROOM_TTL = 0.2
    agent_id = api.ready_agent()
    _runtime_room(api, agent_id)
    assert api.post(f"/v1/agent/{agent_id}/speak", json={"message": "x"}).status_code == 200
    time.sleep(0.3)
    assert api.post(f"/v1/agent/{agent_id}/speak", json={"message": "x"}).status_code == 404


def test_runtime_token_without_an_agent_opens_no_room(api):
    response = api.post("/v1/runtime-tokens/request")
    assert response.status_code == 200
    assert response.json()["data"]["transaction_id"]
    assert api.get("/control/rooms").json()["rooms"] == []


def test_runtime_token_needs_credits_and_a_ready_agent_to_open_a_room(sandbox_client):
    client = sandbox_client()
    agent_id = client.generate()
    # The docs list no error for an agent still generating: the (account-scoped) token is
    # issued, but the avatar cannot launch, so no room opens.
    response = client.post(
        "/v1/runtime-tokens/request", json={"agent_code": agent_id, "room_name": "early"}
    )
    assert response.status_code == 200
    assert response.json()["data"]["token"]
    assert client.get("/control/rooms").json()["rooms"] == []
    client.configure(credits=0)
    response = client.post("/v1/runtime-tokens/request", json={"agent_code": agent_id})
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "INSUFFICIENT_BALANCE"


def test_concurrency_limit_per_plan(sandbox_client):
    client = sandbox_client(plan="free")  # one live session
    agent_id = client.ready_agent()
    _runtime_room(client, agent_id, "first")
    _runtime_room(client, agent_id, "first")  # the same room again is no new session
    response = client.post(
        "/v1/runtime-tokens/request", json={"agent_code": agent_id, "room_name": "second"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "CONCURRENCY_LIMIT_REACHED"
    client.post("/control/rooms/first/end")
    _runtime_room(client, agent_id, "second")


@pytest.mark.parametrize(
    ("path", "content", "code"),
    [
        ("speak", b"{}", "MISSING_PARAM"),
        ("speak", b'{"message": ""}', "MISSING_PARAM"),
        ("speak", b'{"message": 12}', "VALIDATION_ERROR"),
        ("speak", b'{"message": "x", "room_id": 5}', "VALIDATION_ERROR"),
        ("speak", b"[", "VALIDATION_ERROR"),
        ("add-context", b"{}", "MISSING_PARAM"),
        ("add-context", b'{"context": "x", "type": "shout"}', "VALIDATION_ERROR"),
        ("add-context", b'{"context": null}', "MISSING_PARAM"),
    ],
)
def test_bad_message_bodies(api, path, content, code):
    agent_id = api.ready_agent()
    response = api.post(f"/v1/agent/{agent_id}/{path}", content=content)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


# --- Embed tokens and the hosted page (without a browser) ---------------------------------------


def _embed_token(client, agent_id, **extra):
    body = {"agent_id": agent_id, "fingerprint": "9f3c8b1a2d4e5f6789ab", **extra}
    return client.post("/v1/embed-tokens/request", json=body)


def test_embed_token_shape(api):
    agent_id = api.ready_agent(model="essence")
    response = _embed_token(api, agent_id)
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["status_code"]) == ("success", 200)
    assert body["data"]["supported_models"] == ["essence-1", "essence-2-max"]
    claims = tokens.token_decode(token=body["data"]["token"])
    assert claims["sub"] == agent_id
    assert claims["sid"] == body["data"]["sid"]
    assert claims["exp"] - claims["iat"] == 3600
    with_model = _embed_token(api, agent_id, model="essence-2-max").json()["data"]
    assert with_model["model"] == "essence-2-max"


def test_embed_token_errors(api):
    agent_id = api.ready_agent()
    assert _embed_token(api, agent_id, model="expression-2").json()["error"] == {
        "code": "MODEL_NOT_GENERATED",
        "message": f"agent {agent_id}'s expression-2 model hasn't been generated yet",
        "httpStatus": 409,
    }
    assert _embed_token(api, agent_id, model="warp-9").status_code == 400
    assert _embed_token(api, agent_id, model="expression-1-gpu").status_code == 200
    missing = api.post("/v1/embed-tokens/request", json={"agent_id": agent_id})
    assert missing.json()["error"]["message"] == "Missing required field: fingerprint"
    # An agent still generating: the token is minted (the docs list no error for it) and can be
    # launched as nothing yet; asking for a model is the documented 409 MODEL_NOT_GENERATED.
    pending = api.generate()
    minted = _embed_token(api, pending)
    assert minted.status_code == 200 and minted.json()["data"]["supported_models"] == []
    assert _embed_token(api, pending, model="expression-1").json()["error"]["code"] == (
        "MODEL_NOT_GENERATED"
    )
    # Its hosted room does not open until it is ready; the page says why.
    page = api.http.get(f"/embed/{pending}", params={"token": minted.json()["data"]["token"]})
    assert page.status_code == 409 and "is not ready yet" in page.text
    assert api.get("/control/rooms").json()["rooms"] == []


def test_embed_page_opens_a_room_and_the_poll_returns_messages(api):
    agent_id = api.ready_agent()
    token = _embed_token(api, agent_id).json()["data"]["token"]
    page = api.http.get(f"/embed/{agent_id}", params={"token": token})
    assert page.status_code == 200
    assert "text/html" in page.headers["Content-Type"]
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in policy
    assert "frame-ancestors 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "X-Frame-Options" not in page.headers
    assert f"/sandbox/embed/{agent_id}/face.svg" in page.text
    assert 'src="/static/sandbox/embed.js"' in page.text

    response = api.post(f"/v1/agent/{agent_id}/speak", json={"message": "Hi there"})
    assert response.json()["delivered_to_rooms"] == 1
    api.post(f"/v1/agent/{agent_id}/add-context", json={"context": "Name: Ada"})
    live = api.http.post(f"/embed/{agent_id}/live", params={"token": token, "after": 0}).json()
    assert live["room_id"].startswith("embed-")
    assert [(m["type"], m["text"]) for m in live["messages"]] == [
        ("speak", "Hi there"),
        ("add_context", "Name: Ada"),
    ]
    after = live["messages"][-1]["id"]
    again = api.http.post(f"/embed/{agent_id}/live", params={"token": token, "after": after})
    assert again.json()["messages"] == []


def test_embed_rooms_lapse_without_heartbeats(api, settings):
    settings.SANDBOX_ROOM_TTL = 0.3
    agent_id = api.ready_agent()
    token = _embed_token(api, agent_id).json()["data"]["token"]
    api.http.get(f"/embed/{agent_id}", params={"token": token})
    for _ in range(3):  # heartbeats keep it live past one TTL
        time.sleep(0.15)
        api.http.post(f"/embed/{agent_id}/live", params={"token": token})
    assert api.post(f"/v1/agent/{agent_id}/speak", json={"message": "x"}).status_code == 200
    time.sleep(0.4)
    response = api.post(f"/v1/agent/{agent_id}/speak", json={"message": "x"})
    assert response.json()["error"]["message"] == f"No active rooms found for agent {agent_id}"


def test_embed_page_refuses_bad_tokens(api, sandbox_client):
    agent_id = api.ready_agent()
    other = sandbox_client()
    other_agent = other.ready_agent()
    foreign = _embed_token(other, other_agent).json()["data"]["token"]
    for token in ["", "garbage", "a.b.c", foreign]:
        page = api.http.get(f"/embed/{agent_id}", params={"token": token})
        assert page.status_code == 401
        assert "Invalid or expired embed token" in page.text
        live = api.http.post(f"/embed/{agent_id}/live", params={"token": token})
        assert live.status_code == 401
    assert api.http.get("/embed/A00XXX0000", params={"token": foreign}).status_code == 404
    assert api.get("/control/rooms").json()["rooms"] == []


def test_embed_tokens_expire(api, settings):
    settings.SANDBOX_EMBED_TOKEN_TTL = -1
    agent_id = api.ready_agent()
    token = _embed_token(api, agent_id).json()["data"]["token"]
    assert api.http.get(f"/embed/{agent_id}", params={"token": token}).status_code == 401


def test_face_placeholder_is_an_svg_with_initials(api):
    agent_id = api.ready_agent()
    name = api.get(f"/v1/agent/{agent_id}").json()["data"]["name"]
    response = api.http.get(f"/embed/{agent_id}/face.svg")
    assert response.headers["Content-Type"] == "image/svg+xml"
    initials = "".join(word[0] for word in name.split())
    assert f">{initials}</text>" in response.text


def test_an_ended_embed_session_is_not_revived_by_its_open_page(api):
    agent_id = api.ready_agent()
    token = _embed_token(api, agent_id).json()["data"]["token"]
    api.http.get(f"/embed/{agent_id}", params={"token": token})
    live = api.http.post(f"/embed/{agent_id}/live", params={"token": token}).json()
    # Terminated (runtime-sessions terminate, revoke-all or the operator's End) while the
    # visitor's tab stays open.
    SandboxRoom.objects.filter(name=live["room_id"]).update(ended_at=timezone.now())

    heartbeat = api.http.post(f"/embed/{agent_id}/live", params={"token": token})

    assert heartbeat.status_code == 401
    assert SandboxRoom.objects.get(name=live["room_id"]).ended_at is not None
    response = api.post(f"/v1/agent/{agent_id}/speak", json={"message": "x"})
    assert response.json()["error"]["message"] == f"No active rooms found for agent {agent_id}"
