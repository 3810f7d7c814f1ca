"""Every operation of the real client against the sandbox, over HTTP.

Each test's requests and answers are checked against openapi.yaml when it ends (conftest.py):
these tests assert what the client makes of the answers, the harness that both sides honour the
contract.
"""

from __future__ import annotations

import base64
import os

import pytest

from portal.bithuman import (
    AgentNotFoundError,
    AgentStatus,
    BithumanClient,
    NoActiveRoomsError,
    NotFoundError,
    aio,
)
from portal.bithuman import webhooks as bithuman_webhooks
from portal.bithuman.types import GenerationStarted
from tests.conformance.conftest import Harness, Tenant

UNKNOWN_CODE = "A00ZZZ0000"


def agent_ready(client: BithumanClient, tenant: Tenant, **generate: object) -> str:
    """A generated agent, brought to `ready` with the sandbox's test clock."""
    started = client.agent_generate(prompt="A friendly fitness coach", **generate)  # type: ignore[arg-type]
    tenant.advance(100_000)
    assert client.agent_status_get(agent_id=started.agent_id).is_ready
    return started.agent_id


# --- Account and secret ---------------------------------------------------------------------------


def test_validate_good_and_bad_secret(harness: Harness, tenant: Tenant, client: BithumanClient):
    assert client.validate() is True
    assert harness.client(secret="sbx_not-a-real-secret").validate() is False
    tenant.configure(suspended=True)
    assert client.validate() is False
    assert [e.status for e in harness.exchanges] == [200, 200, 200]
    assert [e.json() for e in harness.exchanges] == [{"valid": v} for v in (True, False, False)]


def test_me_and_pricing(tenant: Tenant, client: BithumanClient):
    account = client.account_get()
    assert account.credit_balance == 10_000
    assert (account.plan, account.plan_code) == ("pro", "membership_pro")
    pricing = client.pricing_get()
    assert pricing.unit == "credits"
    assert pricing.agent_generation is not None
    assert pricing.agent_generation.by_model["expression-1"] == 250
    assert pricing.agent_generation.by_model["expression-2"] == 2000


# --- Generation -----------------------------------------------------------------------------------


def test_generate_with_every_documented_field(harness: Harness, client: BithumanClient):
    started = client.agent_generate(
        prompt="You are a calm museum guide.",
        image="https://example.com/face.jpg",
        audio="https://example.com/voice.wav",
        aspect_ratio="9:16",
        transparency=True,
        framing="full_body",
        model="essence",
        version="v1",
        agent_id="A12BCD3456",
        idempotency_key="every-field",
    )
    assert started == GenerationStarted(
        agent_id="A12BCD3456",
        success=True,
        message="Agent generation started",
        status="processing",
    )
    assert client.agent_get(code="A12BCD3456").model == "essence-1"
    [sent, _] = harness.exchanges
    assert sent.request_headers["Idempotency-Key"] == "every-field"
    assert "Idempotency-Replayed" not in sent.response_headers


def test_generate_with_base64_media(client: BithumanClient):
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(2048)).decode()
    started = client.agent_generate(prompt="A cheerful barista", image=image, model="expression-1")
    assert client.agent_status_get(agent_id=started.agent_id).status == "processing"


def test_generate_replays_an_idempotency_key(harness: Harness, client: BithumanClient):
    first = client.agent_generate(prompt="A friendly coach", idempotency_key="order-42")
    again = client.agent_generate(prompt="A friendly coach", idempotency_key="order-42")
    other = client.agent_generate(prompt="A friendly coach", idempotency_key="order-43")
    assert again == first
    assert other.agent_id != first.agent_id
    assert client.account_get().credit_balance == 10_000 - 2 * 250  # the replay cost nothing
    sent = harness.exchanges[:3]
    assert [e.request_headers["Idempotency-Key"] for e in sent] == [
        "order-42",
        "order-42",
        "order-43",
    ]
    assert [e.response_headers.get("Idempotency-Replayed") for e in sent] == [None, "true", None]
    assert sent[1].response_content == sent[0].response_content  # verbatim


def test_generate_without_a_key_sends_a_fresh_one_per_call(
    harness: Harness, client: BithumanClient
):
    one = client.agent_generate(prompt="A friendly coach")
    two = client.agent_generate(prompt="A friendly coach")
    assert one.agent_id != two.agent_id
    keys = [e.request_headers["Idempotency-Key"] for e in harness.exchanges]
    assert len(set(keys)) == 2


def test_status_walks_through_completed_and_success_to_ready(
    tenant: Tenant, client: BithumanClient
):
    agent_id = client.agent_generate(prompt="A friendly coach", model="expression-1").agent_id
    seen: list[AgentStatus] = [client.agent_status_get(agent_id=agent_id)]
    for _ in range(25):  # 25 steps of 4 simulated seconds cover the 90 s of expression-1
        tenant.advance(4)
        seen.append(client.agent_status_get(agent_id=agent_id))
    statuses = [s.status for s in seen]
    assert statuses[0] == "processing"
    assert statuses[-1] == "ready"
    assert {"completed", "success", "generating"} <= set(statuses)
    # Only ready and failed end polling: `completed` (~5 %) and `success` (sub-steps) do not.
    assert [s.is_terminal for s in seen] == [s == "ready" for s in statuses]
    assert [s.progress for s in seen] == sorted(s.progress for s in seen)
    ready = seen[-1]
    assert (ready.current_step, ready.progress) == ("done", 1.0)
    assert ready.supported_models == ("expression-1",)
    assert ready.model_url and ready.model_url.endswith(f"{agent_id}.imx")


def test_a_poll_loop_on_a_fast_sandbox_clock_ends_on_ready(
    harness: Harness, settings: object, client: BithumanClient
):
    # No knob of the account's own: SANDBOX_TIME_SCALE makes expression-1's 90 s take ~0.15 s.
    settings.SANDBOX_TIME_SCALE = 600.0  # type: ignore[attr-defined]
    fast = harness.tenant(time_scale=None)
    fast_client = harness.client(fast)
    agent_id = fast_client.agent_generate(prompt="A friendly coach").agent_id
    status = fast_client.agent_status_get(agent_id=agent_id)
    for _ in range(200):
        if status.is_terminal:
            break
        status = fast_client.agent_status_get(agent_id=agent_id)
    assert status.status == "ready"


def test_a_failed_generation_is_terminal_with_its_reason(tenant: Tenant, client: BithumanClient):
    agent_id = client.agent_generate(image="https://images.invalid/face.jpg").agent_id
    before = client.account_get().credit_balance
    tenant.advance(100_000)
    status = client.agent_status_get(agent_id=agent_id)
    assert (status.is_terminal, status.is_failed) == (True, True)
    assert status.error_message == (
        "Image processing failed: Failed to download after 3 attempts: 404"
    )
    assert client.account_get().credit_balance == before + 250  # refunded


# --- Agents ---------------------------------------------------------------------------------------


def test_get_list_update_and_delete_an_agent(tenant: Tenant, client: BithumanClient):
    ready = agent_ready(client, tenant)
    pending = client.agent_generate(prompt="A patient tutor").agent_id

    agent = client.agent_get(code=ready)
    assert (agent.code, agent.agent_id, agent.status) == (ready, ready, "ready")
    assert agent.system_prompt == "A friendly fitness coach"

    page = client.agent_list()
    assert [a.code for a in page.agents] == [pending, ready]  # newest first
    assert page.pagination is not None
    assert (page.pagination.total, page.pagination.has_more) == (2, False)
    first = client.agent_list(limit=1, offset=0)
    assert [a.code for a in first.agents] == [pending]
    assert first.pagination is not None and first.pagination.has_more is True
    assert [a.code for a in client.agent_list(status="ready").agents] == [ready]

    updated = client.agent_prompt_update(code=ready, system_prompt="You are a sales assistant.")
    assert (updated.agent_code, updated.updated) == (ready, True)
    assert client.agent_get(code=ready).system_prompt == "You are a sales assistant."

    deleted = client.agent_delete(code=ready)
    assert (deleted.deleted, deleted.agent_code) == (True, ready)
    with pytest.raises(AgentNotFoundError):
        client.agent_get(code=ready)
    with pytest.raises(AgentNotFoundError):  # a repeated delete: "already gone"
        client.agent_delete(code=ready)
    assert [a.code for a in client.agent_list().agents] == [pending]


# --- Live rooms: tokens, speak, add-context -------------------------------------------------------


def test_speak_and_add_context_reach_a_live_room(tenant: Tenant, client: BithumanClient):
    code = agent_ready(client, tenant)
    token = client.runtime_token_request(
        agent_code=code,
        room_name="lobby",
        livekit_url="wss://livekit.example.com",
        livekit_token="lk-token",
        model="expression-1",
    )
    assert token.token.count(".") == 2  # a JWT
    assert token.transaction_id

    spoken = client.agent_speak(code=code, message="Welcome to the demo!")
    assert (spoken.agent_code, spoken.context_type, spoken.delivered_to_rooms) == (
        code,
        "speak",
        1,
    )
    silent = client.agent_context_add(code=code, context="The visitor is a premium customer.")
    assert (silent.context_type, silent.delivered_to_rooms) == ("add_context", 1)
    cue = client.agent_context_add(
        code=code, context="Greet the visitor.", context_type="speak", room_id="lobby"
    )
    assert (cue.context_type, cue.delivered_to_rooms) == ("speak", 1)
    # A second room: messages without room_id go to both, with room_id to one.
    client.runtime_token_request(agent_code=code, room_name="hall")
    assert client.agent_speak(code=code, message="Hello both").delivered_to_rooms == 2
    assert client.agent_speak(code=code, message="Hi", room_id="hall").delivered_to_rooms == 1

    rooms = {room["room_id"]: room for room in tenant.control.get("/control/rooms").json()["rooms"]}
    assert rooms["lobby"]["messages"] == [
        {"type": "speak", "text": "Welcome to the demo!"},
        {"type": "add_context", "text": "The visitor is a premium customer."},
        {"type": "speak", "text": "Greet the visitor."},
        {"type": "speak", "text": "Hello both"},
    ]


def test_speak_and_add_context_without_a_live_room(tenant: Tenant, client: BithumanClient):
    code = agent_ready(client, tenant)
    with pytest.raises(NoActiveRoomsError) as spoken:
        client.agent_speak(code=code, message="Anyone there?")
    with pytest.raises(NoActiveRoomsError) as added:
        client.agent_context_add(code=code, context="Background")
    for error in (spoken.value, added.value):
        assert (error.code, error.http_status) == ("NOT_FOUND", 404)
        assert error.message == f"No active rooms found for agent {code}"


def test_speak_and_add_context_to_someone_elses_agent(harness: Harness, client: BithumanClient):
    owner = harness.tenant()
    owner_client = harness.client(owner)
    code = agent_ready(owner_client, owner)
    owner_client.runtime_token_request(agent_code=code, room_name="live")  # it has a live room
    for call in (
        lambda: client.agent_speak(code=code, message="Hello"),
        lambda: client.agent_context_add(code=code, context="Hi"),
        lambda: client.agent_get(code=code),
        lambda: client.agent_status_get(agent_id=code),
        lambda: client.agent_prompt_update(code=code, system_prompt="Hijacked"),
        lambda: client.agent_delete(code=code),
    ):
        with pytest.raises(AgentNotFoundError) as caught:
            call()
        assert (caught.value.code, caught.value.http_status) == ("NOT_FOUND", 404)
        assert caught.value.message == f"Agent not found for code: {code}"
    untouched = owner_client.agent_get(code=code)
    assert untouched.system_prompt == "A friendly fitness coach"


def test_embed_token_request(tenant: Tenant, client: BithumanClient):
    code = agent_ready(client, tenant, model="essence-2")
    token = client.embed_token_request(agent_id=code, fingerprint="9f3c8b1a2d4e5f6789ab")
    assert token.token.count(".") == 2
    assert token.sid
    assert token.supported_models == ("essence-2", "essence-2-max")
    assert token.model is None
    pinned = client.embed_token_request(
        agent_id=code, fingerprint="9f3c8b1a2d4e5f6789ab", model="essence-2-gpu"
    )
    assert pinned.model == "essence-2-gpu"
    assert pinned.sid != token.sid


# --- Webhooks -------------------------------------------------------------------------------------


def test_webhooks_create_list_delete(harness: Harness, client: BithumanClient):
    created = client.webhook_create(
        url="https://example.com/bithuman/webhook",
        events=["agent.ready", "agent.failed"],
        description="conformance",
    )
    assert created.secret.startswith("whsec_")
    assert created.events == ("agent.ready", "agent.failed")
    assert (created.active, created.description) == (True, "conformance")
    everything = client.webhook_create(url="https://example.com/all")
    assert everything.events == ()  # none named: every event

    listed = client.webhook_list()
    assert {w.id for w in listed} == {created.id, everything.id}
    assert all(not hasattr(w, "secret") for w in listed)
    listed_body = next(e for e in harness.exchanges if e.method == "GET").json()
    assert all("secret" not in w for w in listed_body["data"])

    deleted = client.webhook_delete(webhook_id=created.id)
    assert deleted.deleted is True
    assert [w.id for w in client.webhook_list()] == [everything.id]
    with pytest.raises(NotFoundError) as caught:
        client.webhook_delete(webhook_id=created.id)
    # A webhook is neither an agent nor its rooms: the plain NotFoundError.
    assert type(caught.value) is NotFoundError
    assert caught.value.code == "NOT_FOUND"


def test_a_webhook_registered_by_the_client_gets_a_verifiable_delivery(
    settings: object, tenant: Tenant, client: BithumanClient, webhook_receiver
):
    settings.SANDBOX_WEBHOOK_ALLOW_LOCAL = True  # type: ignore[attr-defined]
    hook = client.webhook_create(url=webhook_receiver.url, events=["agent.ready"])
    code = agent_ready(client, tenant)
    [delivery] = webhook_receiver.received
    bithuman_webhooks.signature_verify(
        secret=hook.secret, raw_body=delivery.body, headers=delivery.headers
    )
    assert delivery.json()["event"] == "agent.ready"
    assert delivery.json()["data"] == {"agent_id": code, "code": code}


# --- The asynchronous client ----------------------------------------------------------------------


def test_async_client_fetches_many_statuses(harness: Harness, tenant: Tenant, client):
    ready = agent_ready(client, tenant)
    pending = client.agent_generate(prompt="A patient tutor").agent_id

    # The poller's fetch (aiohttp, the process's pooled connections) against the sandbox.
    account = aio.StatusAccount(key="tenant", base_url=harness.api_url, api_secret=tenant.secret)
    codes = [ready, pending, UNKNOWN_CODE]
    requests = [aio.StatusRequest(key=code, account=account, agent_id=code) for code in codes]

    results = aio.statuses_fetch_sync(requests, concurrency=2, deadline=10.0, timeout=5.0).results
    assert list(sorted(results)) == sorted(codes)
    assert isinstance(results[ready], AgentStatus) and results[ready].is_ready
    assert isinstance(results[pending], AgentStatus) and results[pending].status == "processing"
    assert isinstance(results[UNKNOWN_CODE], AgentNotFoundError)
