"""Webhooks: registration, signed agent.ready / agent.failed deliveries over real HTTP to a local
receiver, retries with backoff, the periodic tick and the test ping."""

import json
import time

import pytest

from portal.bithuman import webhooks as bithuman_webhooks
from sandbox import services, tasks
from sandbox.models import SandboxWebhookDelivery

pytestmark = pytest.mark.django_db(transaction=True)


def _register(client, url, events=None):
    body = {"url": url, "description": "tests"}
    if events is not None:
        body["events"] = events
    response = client.post("/v1/webhooks", json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _assert_signed(request, secret, *, event, agent_id):
    headers = {name.lower(): value for name, value in request.headers.items()}
    bithuman_webhooks.signature_verify(secret=secret, raw_body=request.body, headers=headers)
    assert headers["x-bithuman-event"] == event
    assert headers["x-bithuman-delivery"].startswith("evt_")
    assert abs(int(headers["x-bithuman-timestamp"]) - time.time()) < 60
    assert headers["content-type"] == "application/json"
    body = request.json()
    assert set(body) == {"id", "event", "created", "data"}
    assert body["id"] == headers["x-bithuman-delivery"]
    assert body["event"] == event
    assert body["data"] == {"agent_id": agent_id, "code": agent_id}


def test_create_list_get_delete(api):
    created = _register(api, "https://example.com/hooks", ["agent.ready"])
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["agent.ready"]
    assert created["active"] is True
    assert created["description"] == "tests"
    listed = api.get("/v1/webhooks").json()["data"]
    assert [w["id"] for w in listed] == [created["id"]]
    assert "secret" not in listed[0]
    one = api.get(f"/v1/webhooks/{created['id']}").json()["data"]
    assert one["url"] == "https://example.com/hooks"
    assert "secret" not in one
    assert api.delete(f"/v1/webhooks/{created['id']}").json() == {"success": True, "deleted": True}
    assert api.delete(f"/v1/webhooks/{created['id']}").status_code == 404
    assert api.get("/v1/webhooks").json()["data"] == []


def test_webhooks_are_per_account(sandbox_client):
    owner, intruder = sandbox_client(), sandbox_client()
    hook = _register(owner, "https://example.com/hooks")
    assert intruder.get(f"/v1/webhooks/{hook['id']}").status_code == 404
    assert intruder.delete(f"/v1/webhooks/{hook['id']}").status_code == 404
    assert intruder.get("/v1/webhooks").json()["data"] == []
    assert owner.get(f"/v1/webhooks/{hook['id']}").status_code == 200


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{}", "MISSING_PARAM"),
        (b'{"url": "ftp://example.com"}', "VALIDATION_ERROR"),
        (b'{"url": "not a url"}', "VALIDATION_ERROR"),
        (b'{"url": "https://example.com", "events": ["agent.deleted"]}', "VALIDATION_ERROR"),
        (b'{"url": "https://example.com", "events": "agent.ready"}', "VALIDATION_ERROR"),
        (b'{"url": 5}', "VALIDATION_ERROR"),
        (b"{", "VALIDATION_ERROR"),
    ],
)
def test_bad_webhook_bodies(api, content, code):
    response = api.post("/v1/webhooks", content=content)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_unknown_webhook_ids_are_404(api):
    for webhook_id in ["not-a-uuid", "1de0c020-9d5e-4f8b-a1c2-3d4e5f607182"]:
        assert api.get(f"/v1/webhooks/{webhook_id}").status_code == 404
        assert api.delete(f"/v1/webhooks/{webhook_id}").status_code == 404


def test_without_local_delivery_only_public_https_is_accepted(api, settings):
    settings.SANDBOX_WEBHOOK_ALLOW_LOCAL = False
    for url in ["http://example.com/h", "https://localhost/h", "https://10.0.0.5/h"]:
        assert api.post("/v1/webhooks", json={"url": url}).status_code == 400, url
    assert api.post("/v1/webhooks", json={"url": "https://example.com/h"}).status_code == 200


def test_agent_ready_is_delivered_signed(api, webhook_receiver):
    hook = _register(api, webhook_receiver.url)
    agent_id = api.generate()
    api.advance(1000)
    assert webhook_receiver.received == []  # nothing until the generation is seen to end
    assert api.status(agent_id)["status"] == "ready"
    assert len(webhook_receiver.received) == 1
    request = webhook_receiver.received[0]
    assert request.path == "/hooks/bithuman"
    _assert_signed(request, hook["secret"], event="agent.ready", agent_id=agent_id)
    api.status(agent_id)
    assert len(webhook_receiver.received) == 1  # exactly once
    deliveries = api.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
    assert [
        (d["event_type"], d["delivered"], d["attempts"], d["status_code"]) for d in deliveries
    ] == [("agent.ready", True, 1, 200)]


def test_agent_failed_is_delivered_and_subscriptions_filter(api, webhook_receiver):
    only_failed = _register(api, webhook_receiver.url, ["agent.failed"])
    ok = api.generate()
    bad = api.generate(prompt="x [fail-late]")
    api.advance(1000)
    api.status(ok)
    api.status(bad)
    assert len(webhook_receiver.received) == 1
    _assert_signed(
        webhook_receiver.received[0], only_failed["secret"], event="agent.failed", agent_id=bad
    )


def test_failed_deliveries_are_retried_with_backoff(api, webhook_receiver, settings):
    # Celery runs eagerly in tests, so the retries (10 s, 20 s, 40 s apart) happen at once.
    webhook_receiver.script = [500, 503]
    hook = _register(api, webhook_receiver.url)
    agent_id = api.generate()
    api.advance(1000)
    api.status(agent_id)
    assert len(webhook_receiver.received) == 3
    ids = {r.headers["X-BitHuman-Delivery"] for r in webhook_receiver.received}
    assert len(ids) == 1  # the same event id on every attempt, so receivers can deduplicate
    for request in webhook_receiver.received:
        _assert_signed(request, hook["secret"], event="agent.ready", agent_id=agent_id)
    delivery = SandboxWebhookDelivery.objects.get()
    assert (delivery.attempts, delivery.delivered, delivery.status_code) == (3, True, 200)


def test_retries_stop_after_three(api, webhook_receiver):
    webhook_receiver.script = [500] * 10
    _register(api, webhook_receiver.url)
    agent_id = api.generate()
    api.advance(1000)
    api.status(agent_id)
    assert len(webhook_receiver.received) == 4  # the first attempt and 3 retries
    delivery = SandboxWebhookDelivery.objects.get()
    assert (delivery.attempts, delivery.delivered, delivery.status_code) == (4, False, 500)
    assert delivery.last_error == "HTTP 500"


def test_backoff_doubles(api, webhook_receiver, settings, monkeypatch):
    settings.SANDBOX_WEBHOOK_BACKOFF = 5
    webhook_receiver.script = [500] * 10
    countdowns = []
    original = tasks.sandbox_webhook_deliver.apply_async

    def record(*args, countdown=None, **kwargs):
        countdowns.append(countdown)
        return original(*args, **kwargs)

    monkeypatch.setattr(tasks.sandbox_webhook_deliver, "apply_async", record)
    _register(api, webhook_receiver.url)
    agent_id = api.generate()
    api.advance(1000)
    api.status(agent_id)
    assert countdowns == [None, 5, 10, 20]  # .delay() first, then three retries


def test_unreachable_endpoints_are_recorded(api):
    hook = _register(api, "http://127.0.0.1:9/nothing-listens-here")
    agent_id = api.generate()
    api.advance(1000)
    assert api.status(agent_id)["status"] == "ready"  # a dead endpoint never breaks the API
    delivery = api.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"][0]
    assert (delivery["delivered"], delivery["status_code"], delivery["attempts"]) == (
        False,
        None,
        4,
    )


def test_the_tick_finishes_generations_nobody_polls(api, webhook_receiver):
    hook = _register(api, webhook_receiver.url)
    agent_id = api.generate()
    api.advance(1000)
    assert tasks.sandbox_generations_advance.delay().get() == 1
    assert len(webhook_receiver.received) == 1
    _assert_signed(
        webhook_receiver.received[0], hook["secret"], event="agent.ready", agent_id=agent_id
    )
    assert services.agents_advance() == 0  # nothing left to finish


def test_ping(api, webhook_receiver):
    hook = _register(api, webhook_receiver.url)
    response = api.post(f"/v1/webhooks/{hook['id']}/test")
    assert response.json() == {
        "success": True,
        "data": {"delivered": True, "status_code": 200, "attempts": 1},
    }
    request = webhook_receiver.received[0]
    assert request.headers["X-BitHuman-Event"] == "ping"
    bithuman_webhooks.signature_verify(
        secret=hook["secret"], raw_body=request.body, headers=request.headers
    )
    assert json.loads(request.body)["event"] == "ping"


def _documented_verify(secret: str, headers, raw_body: bytes) -> bool:
    """bitHuman's own verification snippet (vendor/bithuman/docs/api/webhooks.md), verbatim."""
    import hashlib
    import hmac

    ts = headers["X-BitHuman-Timestamp"]
    if abs(time.time() - int(ts)) > 300:  # 5-minute replay window
        return False
    sent = headers["X-BitHuman-Signature"].removeprefix("sha256=")
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(sent, expected)


def test_signing_passes_the_documented_check_and_agrees_with_the_client():
    """The sandbox signs with its own code, written from the documentation: bitHuman's published
    snippet accepts it, and so does the portal's receiver (two independent implementations)."""
    from sandbox import signing

    secret, raw = "whsec_60fe3d", b'{"id":"evt_a1b2c3","event":"agent.ready","data":{}}'
    headers = signing.delivery_headers(
        secret=secret, raw_body=raw, event="agent.ready", event_id="evt_a1b2c3"
    )
    assert set(headers) == {
        "X-BitHuman-Event",
        "X-BitHuman-Delivery",
        "X-BitHuman-Timestamp",
        "X-BitHuman-Signature",
    }
    assert headers["X-BitHuman-Delivery"] == "evt_a1b2c3"
    assert _documented_verify(secret, headers, raw)
    assert not _documented_verify(secret, headers, raw + b" ")
    assert not _documented_verify("whsec_other", headers, raw)
    bithuman_webhooks.signature_verify(secret=secret, raw_body=raw, headers=headers)
