"""Fixtures for session tests: a ready agent that really exists in the organization's sandbox
account (walked to ready with the sandbox's test clock), and helpers to open rooms."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest
from django.conf import settings

from agents.models import Agent
from organizations import connections
from sandbox import services as sandbox_services
from sandbox.models import SandboxAccount
from sessions.models import AgentSession, LiveKitConfig
from tests.factories import AgentFactory

LIVEKIT_URL = "wss://portal-test.livekit.invalid"
LIVEKIT_KEY = "APIportalTest"
LIVEKIT_SECRET = "livekit-secret-for-tests-0123456789abcdef"


def org_sandbox_account(org) -> SandboxAccount:
    connection = connections.connection_get(org=org)
    account = sandbox_services.sandbox_account_for_secret(secret=connection.sandbox_secret)
    assert account is not None
    return account


def upstream_ready_agent(org, **fields) -> Agent:
    """An agent generated in the org's sandbox account and brought to ready by its clock."""
    connection = connections.connection_get(org=org)
    with connections.client_for(connection=connection) as client:
        code = client.agent_generate(
            prompt="A friendly museum guide", model="expression-1"
        ).agent_id
    sandbox_services.sandbox_clock_advance(account=org_sandbox_account(org), seconds=100_000)
    return AgentFactory(organization=org, code=code, status="ready", **fields)


@pytest.fixture
def ready_agent(sandbox_api, org) -> Agent:
    return upstream_ready_agent(org, name="Ava")


@pytest.fixture
def livekit_config(org) -> LiveKitConfig:
    return LiveKitConfig.objects.create(
        organization=org, url=LIVEKIT_URL, api_key=LIVEKIT_KEY, api_secret=LIVEKIT_SECRET
    )


def _embed_live_url(session: AgentSession) -> str:
    parts = urlsplit(session.room_url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}/live?{parts.query}"


@pytest.fixture
def heartbeat() -> Callable[[AgentSession], dict]:
    """Do what an open embed page does once: its heartbeat keeps (or makes) the room live."""

    def beat(session: AgentSession) -> dict:
        response = httpx.post(_embed_live_url(session), timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    return beat


def _control_get(org, path: str, **params) -> dict:
    connection = connections.connection_get(org=org)
    response = httpx.get(
        f"{settings.SANDBOX_BASE_URL}/control/{path}",
        headers={"api-secret": connection.sandbox_secret},
        params=params,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def sandbox_rooms(org) -> list[dict]:
    """The org account's live sandbox rooms, with what was delivered to each."""
    return _control_get(org, "rooms")["rooms"]


def sandbox_rooms_all(org) -> list[dict]:
    """Every sandbox room of the org's account, ended ones too (with how they ended)."""
    return _control_get(org, "rooms", all=1)["rooms"]


def sandbox_livekit_project(org) -> dict:
    """The org account's stand-in LiveKit project: url, api_key, api_secret."""
    return _control_get(org, "livekit")
