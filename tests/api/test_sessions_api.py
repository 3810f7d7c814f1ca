"""Sessions over REST, and the integrator's whole journey: create an agent, poll it to ready,
start a session, open the join link, speak, read the events."""

from urllib.parse import urlsplit

import httpx
import pytest
from django.utils import timezone

from agents import tasks as agent_tasks
from agents.models import Agent
from sandbox import services as sandbox_services
from sessions.models import SessionEvent
from tests.api.conftest import ApiClient, make_key
from tests.api.test_agents_api import _envelope
from tests.factories import AgentFactory
from tests.sessions.conftest import org_sandbox_account, upstream_ready_agent

pytestmark = pytest.mark.django_db(transaction=True)


def _open_room(join_url: str) -> None:
    """What a browser on the join link does: the embed page's heartbeat keeps a room live."""
    parts = urlsplit(join_url)
    response = httpx.post(f"{parts.scheme}://{parts.netloc}{parts.path}/live?{parts.query}")
    assert response.status_code == 200, response.text


def test_integrator_journey(sandbox_api, org):
    api = ApiClient(make_key(org))
    created = api.post("/agents", {"name": "Desk", "prompt": "A hotel front desk assistant"})
    assert created.status_code == 202, created.content
    agent_id = created.json()["id"]
    # Time passes at bitHuman; our poller (beat) picks the change up.
    sandbox_services.sandbox_clock_advance(account=org_sandbox_account(org), seconds=100_000)
    Agent.objects.update(next_poll_at=timezone.now())  # its next poll is due
    agent_tasks.agents_poll_tick.delay()
    agent = api.get(f"/agents/{agent_id}").json()
    assert agent["status"] == "ready" and agent["agent_code"]

    started = api.post(f"/agents/{agent_id}/sessions", {"kind": "hosted"})
    assert started.status_code == 201, started.content
    session = started.json()
    assert session["status"] == "live" and session["agent_id"] == agent_id
    assert session["join_url"].startswith(sandbox_api + "/embed/")

    # Nobody has opened the room yet: not delivered, but recorded.
    error = _envelope(
        api.post(f"/sessions/{session['id']}/speak", {"message": "Anyone there?"}),
        409,
        "no_live_room",
    )
    assert SessionEvent.objects.filter(pk=error["details"]["event_id"]).exists()

    _open_room(session["join_url"])
    spoken = api.post(f"/sessions/{session['id']}/speak", {"message": "Welcome to the hotel"})
    assert spoken.status_code == 201, spoken.content
    assert spoken.json()["outcome"] == "delivered" and spoken.json()["delivered_to_rooms"] == 1
    noted = api.post(f"/sessions/{session['id']}/context", {"context": "Breakfast is at 7"})
    assert noted.status_code == 201

    events = api.get(f"/sessions/{session['id']}/events").json()
    texts = [(e["kind"], e["text"], e["outcome"]) for e in events["items"]]
    assert ("speak", "Anyone there?", "no_live_room") in texts
    assert ("speak", "Welcome to the hotel", "delivered") in texts
    assert ("context", "Breakfast is at 7", "delivered") in texts

    listed = api.get("/sessions", agent_id=agent_id, status="live").json()
    assert [s["id"] for s in listed["items"]] == [session["id"]]
    ended = api.post(f"/sessions/{session['id']}/end")
    assert ended.json()["status"] == "ended" and ended.json()["ended_at"]
    _envelope(api.post(f"/sessions/{session['id']}/speak", {"message": "Hi"}), 409, "conflict")


def test_sessions_need_a_ready_agent_and_the_right_scopes(sandbox_api, org):
    api = ApiClient(make_key(org))
    waiting = AgentFactory(organization=org, status="generating")
    _envelope(api.post(f"/agents/{waiting.public_id}/sessions"), 409, "agent_not_ready")
    reader = ApiClient(make_key(org, scopes=["sessions:read", "agents:read"]))
    ready = upstream_ready_agent(org)
    _envelope(reader.post(f"/agents/{ready.public_id}/sessions"), 403, "forbidden")


def test_speak_limits_and_other_organizations(sandbox_api, org, other_org):
    api = ApiClient(make_key(org))
    ready = upstream_ready_agent(org)
    session = api.post(f"/agents/{ready.public_id}/sessions").json()
    fields = _envelope(
        api.post(f"/sessions/{session['id']}/speak", {"message": "x" * 2001}),
        422,
        "validation_error",
    )["details"]["fields"]
    assert "message" in fields
    _envelope(
        api.post(f"/sessions/{session['id']}/context", {"context": ""}), 422, "validation_error"
    )
    intruder = ApiClient(make_key(other_org))
    for path in [f"/sessions/{session['id']}", f"/sessions/{session['id']}/events"]:
        _envelope(intruder.get(path), 404, "not_found")
    _envelope(
        intruder.post(f"/sessions/{session['id']}/speak", {"message": "hi"}), 404, "not_found"
    )
    _envelope(intruder.post(f"/agents/{ready.public_id}/sessions"), 404, "not_found")
    assert intruder.get("/sessions").json()["count"] == 0
