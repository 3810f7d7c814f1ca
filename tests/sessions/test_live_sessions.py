"""The bitHuman account's live sessions (issue 15 item 4), through the page and the REST API,
against the sandbox over HTTP: every runtime session of the account (the portal's and ones
started outside it), the KPIs, Terminate, the owners' revoke-all, roles, tenant isolation, the
brief cache and the Read budget."""

from __future__ import annotations

import re

import httpx
import pytest
from django.conf import settings as django_settings

from activity.models import AuditEvent
from agents import ratelimit, readbudget
from organizations import connections
from portal.bithuman import BithumanClient
from sandbox.models import SandboxAccount
from sessions import services, upstream
from sessions.models import AgentSession
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.sessions.conftest import org_sandbox_account, upstream_ready_agent

pytestmark = pytest.mark.django_db(transaction=True)


def _outside_embed(org, agent_code: str) -> str:
    """A session started outside the portal: the customer's website mints an embed token with
    the same bitHuman account and a visitor opens it. Returns its room name."""
    connection = connections.connection_get(org=org)
    with connections.client_for(connection=connection) as client:
        token = client.embed_token_request(agent_id=agent_code, fingerprint="f00d").token
    page = httpx.get(
        f"{django_settings.SANDBOX_BASE_URL}/embed/{agent_code}",
        params={"token": token},
        timeout=10,
    )
    assert page.status_code == 200
    live = httpx.post(
        f"{django_settings.SANDBOX_BASE_URL}/embed/{agent_code}/live",
        params={"token": token},
        timeout=10,
    )
    return live.json()["room_id"]


@pytest.fixture
def scene(ready_agent, org, member, heartbeat):
    """A linked portal session and a website visitor's session of the same agent."""
    session = services.session_start(actor=member, agent=ready_agent, kind="hosted")
    heartbeat(session)
    upstream.pending_sessions_link()
    session.refresh_from_db()
    outside_room = _outside_embed(org, ready_agent.code)
    return session, outside_room


def _page(membership, status=200) -> str:
    response = client_for(membership).get(f"/o/{membership.organization.slug}/sessions/account/")
    assert response.status_code == status
    return response.content.decode()


def _runtime_id(org, room: str) -> str:
    account = org_sandbox_account(org)
    return str(account.sandboxroom_set.get(name=room).session_id)


def test_admins_see_every_session_of_the_account_with_kpis(scene, org, admin, ready_agent):
    session, outside_room = scene
    html = _page(admin)
    assert 'data-testid="kpi-active">2<' in html
    assert 'data-testid="kpi-burn">8<' in html  # expression-1: 4 credits a minute each
    # The portal's session links to its console; the website's is marked as outside.
    portal_row = re.search(rf'<tr id="runtime-{session.upstream_session_id}".*?</tr>', html, re.S)
    assert portal_row and f"/sessions/{session.public_id}/" in portal_row.group(0)
    assert f"/agents/{ready_agent.public_id}/" in portal_row.group(0)
    outside_row = re.search(
        rf'<tr id="runtime-{_runtime_id(org, outside_room)}".*?</tr>', html, re.S
    )
    assert outside_row and "Started outside the portal" in outside_row.group(0)
    assert outside_room in outside_row.group(0) and "Terminate" in outside_row.group(0)
    for column in ("Minutes", "Credits", "Burn rate", "Transcript", "Started", "Room"):
        assert f">{column}</th>" in html
    # Only owners get the emergency stop.
    assert "Revoke all runtime keys" not in html


def test_members_and_viewers_are_refused_and_other_organizations_get_404(
    scene, org, member, viewer, other_owner
):
    _page(member, status=403)
    _page(viewer, status=403)
    foreign = client_for(other_owner).get(f"/o/{org.slug}/sessions/account/")
    assert foreign.status_code == 404


def test_terminate_asks_first_then_ends_the_outside_session_and_is_audited(scene, org, admin):
    session, outside_room = scene
    runtime_id = _runtime_id(org, outside_room)
    url = f"/o/{org.slug}/sessions/account/{runtime_id}/terminate/"
    # Terminate takes the sessions bitHuman listed to this organization: the page lists it.
    assert client_for(admin).post(url, {"confirmed": "yes"}).status_code == 404
    assert org_sandbox_account(org).sandboxroom_set.get(name=outside_room).ended_at is None
    assert f'id="runtime-{runtime_id}"' in _page(admin)
    ask = client_for(admin).post(url, {"room": outside_room})
    assert ask.status_code == 200 and "Terminate this live session?" in ask.content.decode()
    assert org_sandbox_account(org).sandboxroom_set.get(name=outside_room).ended_at is None

    done = client_for(admin).post(url, {"confirmed": "yes"}, follow=True)
    assert "Session terminated" in done.content.decode()
    room = org_sandbox_account(org).sandboxroom_set.get(name=outside_room)
    assert room.ended_at is not None and "live sessions" in room.terminated_reason
    entry = AuditEvent.objects.for_org(org).get(action="runtime_session.terminated")
    assert entry.details["runtime_session_id"] == runtime_id and entry.actor_user == admin.user
    session.refresh_from_db()
    assert session.is_live  # the portal's own session was not touched
    # The list is read again after a terminate (not the cached one).
    assert 'data-testid="kpi-active">1<' in _page(admin)


def test_terminating_a_portal_sessions_room_ends_the_portal_session_too(scene, org, admin):
    session, _ = scene
    url = f"/o/{org.slug}/sessions/account/{session.upstream_session_id}/terminate/"
    client_for(admin).post(url, {"confirmed": "yes"})
    session.refresh_from_db()
    assert not session.is_live and session.upstream_ended_at is not None
    assert session.ended_by == admin.user


def test_another_organizations_runtime_session_is_404(scene, org, other_org, other_owner):
    session, outside_room = scene
    upstream_ready_agent(other_org)  # the other organization has its own sandbox account
    for runtime_id in (_runtime_id(org, outside_room), session.upstream_session_id, "nope"):
        url = f"/o/{other_org.slug}/sessions/account/{runtime_id}/terminate/"
        response = client_for(other_owner).post(url, {"confirmed": "yes"})
        assert response.status_code == 404
    assert org_sandbox_account(org).sandboxroom_set.filter(ended_at__isnull=True).count() == 2


def test_revoke_all_is_for_owners_with_the_typed_slug(scene, org, owner, admin):
    _session, _ = scene
    url = f"/o/{org.slug}/sessions/account/revoke-all/"
    assert client_for(admin).post(url, {"confirmation": org.slug}).status_code == 403
    wrong = client_for(owner).post(url, {"confirmation": "yes please"})
    assert wrong.status_code == 400
    assert f"Type {org.slug} to confirm." in wrong.content.decode()
    assert 'value="yes please"' in wrong.content.decode()  # what was typed stays
    assert not SandboxAccount.objects.get(pk=org_sandbox_account(org).pk).runtime_suspended

    page = _page(owner)
    assert "Revoke all runtime keys" in page and "about 5 minutes" in page
    assert "create a new API key" in page
    done = client_for(owner).post(url, {"confirmation": org.slug, "reason": "leak"}, follow=True)
    assert "All runtime keys revoked" in done.content.decode()
    account = SandboxAccount.objects.get(pk=org_sandbox_account(org).pk)
    assert account.runtime_suspended
    assert not account.sandboxroom_set.filter(ended_at__isnull=True).exists()
    entry = AuditEvent.objects.for_org(org).get(action="runtime.revoked_all")
    assert entry.details["reason"] == "leak" and entry.actor_user == owner.user


def test_the_list_is_cached_briefly_and_an_older_one_stands_in_without_budget(
    scene, org, admin, monkeypatch, settings
):
    listed: list[str] = []
    original = BithumanClient.runtime_session_list

    def spy(self, **kwargs):
        listed.append(kwargs.get("window", ""))
        return original(self, **kwargs)

    monkeypatch.setattr(BithumanClient, "runtime_session_list", spy)
    _page(admin)
    _page(admin)
    assert listed == ["all"]  # one call for two page views

    settings.LIVE_SESSIONS_CACHE_SECONDS = 0  # the copy is old now
    connection = connections.connection_get(org=org)
    ratelimit.account_defer(key=readbudget.account_of(connection), seconds=60)
    html = _page(admin)
    assert listed == ["all"]  # the budget is spent: bitHuman was not asked
    assert 'data-testid="live-stale"' in html and "read budget" in html
    assert 'data-testid="kpi-active">2<' in html


def test_no_budget_and_no_earlier_list_says_so_instead_of_failing(scene, org, admin):
    connection = connections.connection_get(org=org)
    ratelimit.account_defer(key=readbudget.account_of(connection), seconds=60)
    html = _page(admin)
    assert 'data-testid="live-problem"' in html and "read budget" in html


# --- REST API ------------------------------------------------------------------------------------


def test_the_api_lists_and_terminates_with_the_live_sessions_scopes(scene, org, ready_agent):
    session, outside_room = scene
    reader = ApiClient(make_key(org, scopes=["live_sessions:read"]))
    body = reader.get("/live-sessions").json()
    assert body["active_count"] == 2
    by_room = {item["room_name"]: item for item in body["items"]}
    assert by_room[outside_room]["session_id"] is None
    assert by_room[outside_room]["agent_id"] == str(ready_agent.public_id)
    portal = by_room[session.upstream_room_name]
    assert portal["session_id"] == str(session.public_id) and portal["status"] == "live"
    assert {"minutes", "credits", "burn_rate_cr_per_min", "has_transcript"} <= set(portal)

    runtime_id = by_room[outside_room]["id"]
    refused = reader.post(f"/live-sessions/{runtime_id}/terminate")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    writer = ApiClient(make_key(org, scopes=["live_sessions:write"]))
    done = writer.post(f"/live-sessions/{runtime_id}/terminate")
    assert done.status_code == 200 and done.json()["terminated"] is True
    assert org_sandbox_account(org).sandboxroom_set.get(name=outside_room).ended_at is not None
    entry = AuditEvent.objects.for_org(org).get(action="runtime_session.terminated")
    assert entry.actor_api_key is not None


def test_the_api_needs_the_scope_and_answers_404_for_other_accounts_sessions(scene, org, other_org):
    session, outside_room = scene
    assert (
        ApiClient(make_key(org, scopes=["sessions:read"])).get("/live-sessions").status_code == 403
    )
    upstream_ready_agent(other_org)
    theirs = ApiClient(make_key(other_org, scopes=["live_sessions:read", "live_sessions:write"]))
    assert theirs.get("/live-sessions").json()["items"] == []
    for runtime_id in (_runtime_id(org, outside_room), session.upstream_session_id):
        response = theirs.post(f"/live-sessions/{runtime_id}/terminate")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert AgentSession.objects.get(pk=session.pk).is_live
