"""Another client of bitHuman's API (bitHuman's dashboard, a customer's script): it uses the
organization's account as the docs describe (POST /v1/agent/generate, POST /v1/agent/{code},
DELETE /v1/agent/{code}) over HTTP, beside the portal and without it."""

from __future__ import annotations

import httpx
from django.conf import settings

from organizations import connections


def _client(org) -> httpx.Client:
    connection = connections.connection_get(org=org)
    return httpx.Client(
        base_url=settings.SANDBOX_BASE_URL,
        headers={"api-secret": connection.api_secret},
        timeout=15,
    )


def generate(org, prompt: str, **extra) -> str:
    """A new agent in the org's bitHuman account, made outside the portal: its code."""
    with _client(org) as client:
        response = client.post("/v1/agent/generate", json={"prompt": prompt, **extra})
    assert response.status_code == 200, response.text
    return response.json()["agent_id"]


def prompt_set(org, code: str, text: str) -> None:
    with _client(org) as client:
        response = client.post(f"/v1/agent/{code}", json={"system_prompt": text})
    assert response.status_code == 200, response.text


def delete(org, code: str) -> None:
    with _client(org) as client:
        response = client.delete(f"/v1/agent/{code}")
    assert response.status_code == 200, response.text


def clock_advance(org, seconds: float) -> None:
    """The sandbox's test clock (its control API): generations finish sooner."""
    with _client(org) as client:
        response = client.post("/control/clock", json={"advance_seconds": seconds})
    assert response.status_code == 200, response.text


def status_of(org, code: str) -> str:
    with _client(org) as client:
        response = client.get(f"/v1/agent/{code}")
    assert response.status_code == 200, response.text
    return response.json()["data"]["status"]
