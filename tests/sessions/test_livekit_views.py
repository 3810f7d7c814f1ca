"""A LiveKit session through the pages in Test mode: the Settings section explains both delivery
paths and saves the agent name; Start creates the room in the sandbox's stand-in LiveKit
project and frames its link in the console; a spoken line reaches that room; End closes it.
Another organization's members get 404 for all of it."""

from __future__ import annotations

import html as html_lib
import re

import pytest
from django.urls import reverse

from portal.confirm import CONFIRM_FIELD
from sandbox.models import SandboxLiveKitDispatch, SandboxLiveKitRoom
from sessions.models import AgentSession, LiveKitConfig
from tests.conftest import client_for
from tests.sessions.conftest import sandbox_rooms

pytestmark = pytest.mark.django_db(transaction=True)


def url(name: str, org, *args) -> str:
    return reverse(name, args=[org.slug, *args])


def test_settings_explain_both_delivery_paths_and_save_the_agent_name(org, admin, settings):
    settings.WEBHOOK_ALLOW_LOCAL = True  # the .invalid host resolves nowhere
    client = client_for(admin)
    page = client.get(url("org_settings", org)).content.decode()
    assert "Hosted embed" in page and "Your own LiveKit worker" in page
    assert "livekit-plugins-bithuman" in page and "examples/livekit_worker" in page
    assert 'data-testid="livekit-test-mode"' in page  # the org is in Test mode
    assert 'name="agent_name"' in page and 'value="bithuman-avatar"' in page

    bad = client.post(
        url("livekit_settings", org),
        {
            "url": "wss://acme.livekit.invalid",
            "api_key": "k",
            "api_secret": "s" * 20,
            "agent_name": "no spaces please",
        },
    )
    assert bad.status_code == 400
    assert "Give the agent name your LiveKit worker registers with" in bad.content.decode()
    assert "no spaces please" in bad.content.decode()  # what was typed is kept
    assert not LiveKitConfig.objects.exists()

    saved = client.post(
        url("livekit_settings", org),
        {
            "url": "wss://acme.livekit.invalid",
            "api_key": "k",
            "api_secret": "s" * 20,
            "agent_name": "acme-avatar",
        },
    )
    assert saved.status_code == 302
    assert LiveKitConfig.objects.get().agent_name == "acme-avatar"
    page = client.get(url("org_settings", org)).content.decode()
    assert '<code data-testid="livekit-agent-name">acme-avatar</code>' in page


def test_a_livekit_session_from_start_to_a_spoken_line_to_end_through_the_pages(
    sandbox_api, org, member, other_owner, ready_agent, livekit_config
):
    client = client_for(member)
    started = client.post(url("session_start", org, ready_agent.public_id), {"kind": "livekit"})
    assert started.status_code == 302, started.content.decode()
    session = AgentSession.objects.get()
    assert started["Location"] == url("session_console", org, session.public_id)
    assert SandboxLiveKitDispatch.objects.get(room__name=session.room_name).state == "joined"

    console = client.get(started["Location"]).content.decode()
    frame = html_lib.unescape(re.search(r'<iframe id="room-frame" src="([^"]+)"', console)[1])
    assert frame.startswith(f"{sandbox_api}/livekit/meet?liveKitUrl=")
    assert 'data-testid="livekit-note"' in console
    assert f"this session's bitHuman room <code>{session.room_name}</code>" in console

    spoken = client.post(
        url("session_speak", org, session.public_id), {"message": "Hello from the console"}
    )
    assert spoken.status_code == 302
    [room] = sandbox_rooms(org)
    assert room["room_id"] == session.room_name
    assert room["messages"] == [{"type": "speak", "text": "Hello from the console"}]

    # Another organization's owner: 404 on the console, speak and end, and nothing happens.
    stranger = client_for(other_owner)
    for response in (
        stranger.get(url("session_console", org, session.public_id)),
        stranger.get(
            reverse("session_console", args=[other_owner.organization.slug, session.public_id])
        ),
        stranger.post(
            reverse("session_speak", args=[other_owner.organization.slug, session.public_id]),
            {"message": "x"},
        ),
        stranger.post(
            reverse("session_end", args=[other_owner.organization.slug, session.public_id]),
            {CONFIRM_FIELD: "yes"},
        ),
    ):
        assert response.status_code == 404
    assert AgentSession.objects.get().is_live

    ended = client.post(url("session_end", org, session.public_id), {CONFIRM_FIELD: "yes"})
    assert ended.status_code == 302
    session.refresh_from_db()
    assert session.status == "ended"
    assert SandboxLiveKitRoom.objects.get(name=session.room_name).deleted_at is not None
    assert sandbox_rooms(org) == []
    console = client.get(url("session_console", org, session.public_id)).content.decode()
    assert f"LiveKit room {session.room_name} closed" in console
