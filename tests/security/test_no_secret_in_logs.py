"""No secret in logs: a whole generation, a webhook delivery and a live session, logged at DEBUG."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone

from activity.models import WebhookEndpoint
from agents import tasks as agent_tasks
from agents.models import Agent
from organizations import connections
from portal.bithuman import webhooks
from sandbox import services as sandbox_services
from tests.api.conftest import ApiClient, make_key
from tests.api.test_sessions_api import _open_room
from tests.sessions.conftest import org_sandbox_account

pytestmark = pytest.mark.django_db(transaction=True)


def _everything_logged(records: list[logging.LogRecord]) -> str:
    """Messages, arguments, extra fields (the request/task context) and tracebacks."""
    formatter = logging.Formatter()
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.append(json.dumps(record.__dict__, default=repr))
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


def test_a_generation_a_webhook_and_a_session_log_no_secret(sandbox_api, org, caplog, live_server):
    caplog.set_level(logging.DEBUG)
    key = make_key(org)
    connection = connections.connection_get(org=org)
    connection.webhook_secret = "whsec_" + "w" * 32
    connection.save()
    endpoint = WebhookEndpoint.objects.create(
        organization=org,
        url="https://hooks.invalid/portal",
        events=["agent.ready"],
        secret="whsec_outbound_" + "o" * 24,
    )
    secrets = {
        "bitHuman API secret": connection.api_secret,
        "API key": key,
        "bitHuman webhook secret": connection.webhook_secret,
        "outbound webhook secret": endpoint.secret,
    }
    api = ApiClient(key)

    created = api.post("/agents", {"name": "Desk", "prompt": "A hotel front desk assistant"})
    assert created.status_code == 202, created.content
    agent_id = created.json()["id"]
    sandbox_services.sandbox_clock_advance(account=org_sandbox_account(org), seconds=100_000)
    Agent.objects.update(next_poll_at=timezone.now())
    agent_tasks.agents_poll_tick.delay()
    assert api.get(f"/agents/{agent_id}").json()["status"] == "ready"

    code = Agent.objects.get().code
    raw = json.dumps({"id": "evt_1", "event": "agent.ready", "data": {"code": code}}).encode()
    headers = webhooks.delivery_headers_build(
        secret=connection.webhook_secret, raw_body=raw, event="agent.ready", delivery_id="evt_1"
    )
    url = live_server.url + reverse("bithuman_webhook", args=[connection.receiver_token])
    assert httpx.post(url, content=raw, headers=headers).status_code == 200
    forged = webhooks.delivery_headers_build(
        secret="whsec_wrong", raw_body=raw, event="agent.ready", delivery_id="evt_2"
    )
    assert httpx.post(url, content=raw, headers=forged).status_code == 400

    session = api.post(f"/agents/{agent_id}/sessions", {"kind": "hosted"}).json()
    _open_room(session["join_url"])
    assert api.post(f"/sessions/{session['id']}/speak", {"message": "Welcome"}).status_code == 201
    api.post(f"/sessions/{session['id']}/end")
    ApiClient(key[:-4] + "xxxx").get("/agents")  # a wrong key is logged as a failure
    time.sleep(0.2)  # the live server's request log lines

    logged = _everything_logged(caplog.records)
    assert len(caplog.records) > 20 and "/sessions/" in logged  # the flow was logged
    for name, secret in secrets.items():
        assert secret not in logged, f"the {name} appears in the logs"
        assert secret[-12:] not in logged, f"part of the {name} appears in the logs"
