"""The synchronous client: what it sends, what it parses, idempotency and keeping the secret."""

import json
import logging
import pickle
import traceback
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import respx

from portal.bithuman import (
    AGENT_STATUSES,
    TERMINAL_STATUSES,
    AgentStatus,
    BithumanClient,
    BithumanError,
)
from tests.bithuman.conftest import BASE_URL, SECRET, envelope

STATUS_DATA = {
    "agent_id": "A91XMB7113",
    "status": "generating",
    "progress": 0.45,
    "current_step": "video",
    "progress_msg": "Generating identity video",
    "supported_models": None,
    "error_message": None,
    "created_at": "2026-08-01T10:00:00Z",
    "updated_at": "2026-08-01T10:02:00Z",
}


def sent_json(route) -> dict:
    return json.loads(route.calls.last.request.content)


# --- Every operation: method, path, exact body, parsed result -----------------------------------


def test_every_request_carries_the_secret_header(api, client):
    route = api.get("/v1/agent/status/A91XMB7113").respond(json={"data": STATUS_DATA})

    client.agent_status_get(agent_id="A91XMB7113")

    assert route.calls.last.request.headers["api-secret"] == SECRET


@pytest.mark.parametrize("valid", [True, False])
def test_validate_returns_the_valid_flag(api, client, valid):
    route = api.post("/v1/validate").respond(json={"valid": valid})

    assert client.validate() is valid
    assert route.calls.last.request.content == b""


def test_validate_treats_a_401_as_invalid(api, client):
    api.post("/v1/validate").mock(return_value=envelope(401, "UNAUTHORIZED", "Invalid API secret"))

    assert client.validate() is False


def test_generate_sends_only_the_given_fields_and_parses_the_answer(api, client):
    route = api.post("/v1/agent/generate").respond(
        json={
            "success": True,
            "message": "Agent generation started",
            "agent_id": "A91XMB7113",
            "status": "processing",
        }
    )

    started = client.agent_generate(
        prompt="You are a coach.",
        image="https://example.com/face.jpg",
        model="expression",
        version="v2",
        aspect_ratio="9:16",
        framing="portrait",
        transparency=False,
    )

    assert sent_json(route) == {
        "prompt": "You are a coach.",
        "image": "https://example.com/face.jpg",
        "model": "expression",
        "version": "v2",
        "aspect_ratio": "9:16",
        "framing": "portrait",
        "transparency": False,
    }
    assert started.agent_id == "A91XMB7113"
    assert started.status == "processing"
    assert started.message == "Agent generation started"


def test_generate_sends_a_fresh_uuid4_idempotency_key_per_call(api, client):
    route = api.post("/v1/agent/generate").respond(json={"agent_id": "A91XMB7113"})

    client.agent_generate(prompt="one")
    client.agent_generate(prompt="two")

    first, second = (call.request.headers["Idempotency-Key"] for call in route.calls)
    assert uuid.UUID(first).version == 4
    assert uuid.UUID(second).version == 4
    assert first != second


def test_generate_keeps_the_callers_idempotency_key(api, client):
    route = api.post("/v1/agent/generate").respond(json={"agent_id": "A91XMB7113"})

    client.agent_generate(prompt="one", idempotency_key="order-42")

    assert route.calls.last.request.headers["Idempotency-Key"] == "order-42"


def test_generate_reuses_its_idempotency_key_on_every_retry(api, client, sleeps):
    route = api.post("/v1/agent/generate").mock(
        side_effect=[
            envelope(500, "INTERNAL_ERROR", "boom"),
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
            httpx.Response(200, json={"agent_id": "A91XMB7113", "status": "processing"}),
        ]
    )

    started = client.agent_generate(prompt="one")

    keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
    assert route.call_count == 4
    assert len(keys) == 1
    assert len(sleeps) == 3
    assert started.agent_id == "A91XMB7113"


def test_status_parses_data_and_reports_progress(api, client):
    api.get("/v1/agent/status/A91XMB7113").respond(json={"success": True, "data": STATUS_DATA})

    status = client.agent_status_get(agent_id="A91XMB7113")

    assert status.status == "generating"
    assert status.progress == 0.45
    assert status.current_step == "video"
    assert status.supported_models == ()
    assert status.created_at == datetime(2026, 8, 1, 10, 0, tzinfo=UTC)
    assert status.is_terminal is False


@pytest.mark.parametrize("value", AGENT_STATUSES)
def test_only_ready_and_failed_are_terminal(value):
    status = AgentStatus(status=value)

    assert status.is_terminal is (value in {"ready", "failed"})


def test_terminal_statuses_constant():
    assert frozenset({"ready", "failed"}) == TERMINAL_STATUSES


def test_agent_get_fills_code_and_agent_id_from_each_other(api, client):
    api.get("/v1/agent/A91XMB7113").respond(
        json={"success": True, "data": {"code": "A91XMB7113", "name": "Coach", "status": "ready"}}
    )

    agent = client.agent_get(code="A91XMB7113")

    assert agent.code == agent.agent_id == "A91XMB7113"
    assert agent.name == "Coach"


def test_agent_list_sends_paging_and_parses_pagination(api, client):
    route = api.get("/v1/agents").respond(
        json={
            "success": True,
            "data": [{"agent_id": "A91XMB7113"}, {"code": "A78WKV4515", "status": "ready"}],
            "pagination": {"limit": 2, "offset": 4, "total": 7, "has_more": True},
        }
    )

    page = client.agent_list(limit=2, offset=4, status="ready")

    assert dict(route.calls.last.request.url.params) == {
        "limit": "2",
        "offset": "4",
        "status": "ready",
    }
    assert [agent.code for agent in page.agents] == ["A91XMB7113", "A78WKV4515"]
    assert page.pagination is not None
    assert page.pagination.has_more is True
    assert page.pagination.total == 7


def test_prompt_update_posts_the_system_prompt(api, client):
    route = api.post("/v1/agent/A91XMB7113").respond(
        json={"agent_code": "A91XMB7113", "updated": True}
    )

    result = client.agent_prompt_update(code="A91XMB7113", system_prompt="Be brief.")

    assert sent_json(route) == {"system_prompt": "Be brief."}
    assert result.updated is True
    assert result.agent_code == "A91XMB7113"


def test_agent_delete(api, client):
    api.delete("/v1/agent/A91XMB7113").respond(
        json={"success": True, "agent_code": "A91XMB7113", "deleted": True}
    )

    assert client.agent_delete(code="A91XMB7113").deleted is True


def test_speak_omits_room_id_unless_given(api, client):
    route = api.post("/v1/agent/A78WKV4515/speak").respond(
        json={"agent_code": "A78WKV4515", "context_type": "speak", "delivered_to_rooms": 2}
    )

    everywhere = client.agent_speak(code="A78WKV4515", message="Hello!")
    assert sent_json(route) == {"message": "Hello!"}
    client.agent_speak(code="A78WKV4515", message="Hi room", room_id="room-1")
    assert sent_json(route) == {"message": "Hi room", "room_id": "room-1"}
    assert everywhere.delivered_to_rooms == 2
    assert everywhere.context_type == "speak"


def test_add_context_sends_type_under_its_spec_name(api, client):
    route = api.post("/v1/agent/A78WKV4515/add-context").respond(
        json={"agent_code": "A78WKV4515", "context_type": "add_context", "delivered_to_rooms": 1}
    )

    delivery = client.agent_context_add(
        code="A78WKV4515", context="Bought premium.", context_type="add_context"
    )

    assert sent_json(route) == {"context": "Bought premium.", "type": "add_context"}
    assert delivery.delivered_to_rooms == 1


def test_embed_token_request(api, client):
    route = api.post("/v1/embed-tokens/request").respond(
        json={
            "status": "success",
            "status_code": 200,
            "data": {"token": "eyJ.embed.jwt", "sid": "sid-1", "supported_models": ["essence-1"]},
        }
    )

    token = client.embed_token_request(agent_id="A78WKV4515", fingerprint="9f3c8b1a2d4e5f67")

    assert sent_json(route) == {"agent_id": "A78WKV4515", "fingerprint": "9f3c8b1a2d4e5f67"}
    assert token.token == "eyJ.embed.jwt"
    assert token.supported_models == ("essence-1",)
    # A bearer token must not reach logs through a repr.
    assert "eyJ.embed.jwt" not in repr(token)


def test_runtime_token_request_names_the_agent_both_ways(api, client):
    route = api.post("/v1/runtime-tokens/request").respond(
        json={
            "data": {"token": "eyJ.runtime.jwt", "transaction_id": "tx-1"},
            "status": "success",
            "status_code": 200,
        }
    )

    token = client.runtime_token_request(
        agent_code="A78WKV4515",
        room_name="room-1",
        livekit_url="wss://rtc.example.com",
        livekit_token="lk-token",
        model="expression-2",
    )

    assert sent_json(route) == {
        "agent_code": "A78WKV4515",
        "agent_id": "A78WKV4515",
        "room_name": "room-1",
        "livekit_url": "wss://rtc.example.com",
        "livekit_token": "lk-token",
        "model": "expression-2",
    }
    assert token.transaction_id == "tx-1"
    assert "eyJ.runtime.jwt" not in repr(token)


def test_account_get(api, client):
    api.get("/v1/me").respond(
        json={
            "data": {"user_id": "u1", "plan": "pro", "credit_balance": 5836982},
            "status": "success",
            "status_code": 200,
        }
    )

    account = client.account_get()

    assert account.plan == "pro"
    assert account.credit_balance == 5836982


def test_pricing_get(api, client):
    api.get("/v1/pricing").respond(
        json={
            "success": True,
            "data": {
                "unit": "credits",
                "agent_generation": {"unit": "credits", "by_model": {"expression-2": 2000}},
                "talking_video": {"unit": "credits_per_minute", "rates": {"essence-1": 2}},
                "dynamics_generation": {"flat": 250},
            },
        }
    )

    pricing = client.pricing_get()

    assert pricing.agent_generation is not None
    assert pricing.agent_generation.by_model == {"expression-2": 2000}
    assert pricing.talking_video is not None
    assert pricing.talking_video.rates == {"essence-1": 2}


def test_webhook_create_list_delete(api, client):
    webhook = {
        "id": "1de0c020-9d5e-4f8b-a1c2-3d4e5f607182",
        "url": "https://portal.example.com/hooks/bithuman",
        "events": ["agent.ready", "agent.failed"],
        "description": None,
        "active": True,
    }
    create = api.post("/v1/webhooks").respond(
        json={"success": True, "data": {**webhook, "secret": "whsec_abc"}}
    )
    api.get("/v1/webhooks").respond(json={"success": True, "data": [webhook]})
    api.delete(f"/v1/webhooks/{webhook['id']}").respond(json={"success": True, "deleted": True})

    created = client.webhook_create(url=webhook["url"], events=["agent.ready", "agent.failed"])
    listed = client.webhook_list()
    deleted = client.webhook_delete(webhook_id=webhook["id"])

    assert sent_json(create) == {"url": webhook["url"], "events": ["agent.ready", "agent.failed"]}
    assert created.secret == "whsec_abc"
    assert "whsec_abc" not in repr(created)
    assert [item.id for item in listed] == [webhook["id"]]
    assert listed[0].events == ("agent.ready", "agent.failed")
    assert deleted.deleted is True


def test_identifiers_cannot_escape_their_path_segment(api, client):
    route = api.get(url__regex=r".*").respond(json={"data": {"code": "X"}})

    client.agent_get(code="../webhooks")

    assert route.calls.last.request.url.raw_path == b"/v1/agent/..%2Fwebhooks"


def test_empty_identifier_is_refused_before_sending(api, client):
    route = api.get(url__regex=r".*").respond(json={})

    with pytest.raises(ValueError, match="empty identifier"):
        client.agent_status_get(agent_id="")
    assert route.call_count == 0


def test_a_base_url_with_a_path_keeps_it():
    with respx.mock(assert_all_called=False) as sandbox:
        route = sandbox.post("http://127.0.0.1:8000/sandbox/v1/validate").respond(
            json={"valid": True}
        )
        with BithumanClient(base_url="http://127.0.0.1:8000/sandbox/", api_secret=SECRET) as client:
            assert client.validate() is True
    assert route.call_count == 1


# --- Settings and lifecycle ----------------------------------------------------------------------


def test_timeout_and_retries_default_to_settings(api, settings, sleeps):
    settings.BITHUMAN_TIMEOUT = 2.5
    settings.BITHUMAN_MAX_RETRIES = 1
    route = api.get("/v1/me").mock(return_value=envelope(503, "NO_AVAILABLE_WORKERS", "busy"))

    with (
        BithumanClient(base_url=BASE_URL, api_secret=SECRET, sleep=sleeps.append) as client,
        pytest.raises(BithumanError),
    ):
        client.account_get()

    assert route.call_count == 2  # one try + BITHUMAN_MAX_RETRIES
    assert route.calls.last.request.extensions["timeout"]["read"] == 2.5


def test_context_manager_closes_the_pool():
    with BithumanClient(base_url=BASE_URL, api_secret=SECRET) as client:
        pass

    assert client._http.is_closed


# --- The secret stays secret ---------------------------------------------------------------------


def test_repr_shows_at_most_the_last_four_characters(client):
    for text in (repr(client), str(client)):
        assert SECRET not in text
        assert SECRET[:-4] not in text
        assert "****" + SECRET[-4:] in text


def test_a_short_secret_is_masked_entirely():
    with BithumanClient(base_url=BASE_URL, api_secret="short-Xy7q") as client:
        assert "Xy7q" not in repr(client)
        assert "api_secret='****'" in repr(client)


def _raised(call) -> BithumanError:
    with pytest.raises(BithumanError) as caught:
        call()
    return caught.value


def _exception_texts(error: BaseException) -> list[str]:
    texts = [str(error), repr(error), repr(error.args), repr(vars(error))]
    texts.append("".join(traceback.format_exception(error)))
    return texts


@pytest.mark.parametrize(
    "answer",
    [
        envelope(401, "UNAUTHORIZED", "Invalid API secret"),
        # A server echoing what it got must not smuggle the secret into our messages.
        envelope(400, "VALIDATION_ERROR", f"bad header api-secret={SECRET}"),
        httpx.Response(200, text=f"<html>secret {SECRET}</html>"),
        httpx.Response(502, text=f"proxy error for {SECRET}"),
        httpx.ConnectError(f"cannot connect with {SECRET}"),
        httpx.ReadTimeout("timed out"),
    ],
    ids=["401", "echoing-400", "malformed-200", "502-html", "connect-error", "timeout"],
)
def test_the_secret_is_in_no_raised_exception(api, make_client, answer):
    client = make_client(max_retries=1)
    api.get("/v1/me").mock(side_effect=[answer, answer])

    error = _raised(client.account_get)

    for text in _exception_texts(error):
        assert SECRET not in text
    # httpx exceptions hold the request, and the request its headers: never chained.
    assert error.__cause__ is None
    assert error.__context__ is None
    assert SECRET not in repr(vars(pickle.loads(pickle.dumps(error))))  # noqa: S301 - our bytes


def test_logs_name_the_request_but_never_the_header(api, client, caplog):
    api.get("/v1/me").mock(
        side_effect=[
            envelope(503, "NO_AVAILABLE_WORKERS", "busy"),
            httpx.Response(200, json={"data": {}}),
        ]
    )

    with caplog.at_level(logging.DEBUG):
        client.account_get()

    assert "GET /v1/me" in caplog.text
    assert "retry 1 of 3" in caplog.text
    assert SECRET not in caplog.text
    assert "api-secret" not in caplog.text.lower()
