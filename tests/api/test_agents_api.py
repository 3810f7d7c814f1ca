"""The REST API for agents and its conventions: auth, scopes, envelope, paging, isolation,
idempotency, rate limits."""

import base64

import pytest
from django.utils import timezone

from agents.models import Agent, AgentStatus
from portal.models import ApiKey
from tests.api.conftest import ApiClient, make_key
from tests.factories import AgentFactory
from tests.media import png_bytes, wav_bytes

pytestmark = pytest.mark.django_db


def _envelope(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer nope", "Basic dXNlcjpwYXNz", "Bearer bhp_" + "x" * 43],
)
def test_missing_or_malformed_keys_are_401(org, header):
    client = ApiClient(None)
    client.headers = {"Authorization": header} if header else {}
    _envelope(client.get("/agents"), 401, "unauthenticated")


def test_revoked_and_expired_keys_are_401(org):
    key = make_key(org)
    client = ApiClient(key)
    assert client.get("/organization").status_code == 200
    ApiKey.objects.update(revoked_at=timezone.now())
    _envelope(client.get("/organization"), 401, "unauthenticated")
    ApiKey.objects.update(revoked_at=None, expires_at=timezone.now())
    _envelope(client.get("/organization"), 401, "unauthenticated")


def test_organization_comes_from_the_key(org, api):
    response = api.get("/organization")
    assert response.json() == {"slug": org.slug, "name": org.name, "mode": "test"}


def test_missing_scope_is_403(org):
    client = ApiClient(make_key(org, scopes=["sessions:read"]))
    _envelope(client.get("/agents"), 403, "forbidden")
    _envelope(client.post("/agents", {"name": "x", "prompt": "y"}), 403, "forbidden")
    assert not Agent.objects.exists()


def test_list_paging_filters_and_shape(org, api):
    AgentFactory.create_batch(3, organization=org, status="ready")
    AgentFactory(organization=org, status="completed", name="Midway")
    body = api.get("/agents", limit=2).json()
    assert body["count"] == 4 and len(body["items"]) == 2
    assert len(api.get("/agents", limit=2, offset=3).json()["items"]) == 1
    generating = api.get("/agents", status="generating").json()
    assert [a["name"] for a in generating["items"]] == ["Midway"]
    assert generating["items"][0]["status"] == "generating"  # never the upstream "completed"
    assert generating["items"][0]["agent_code"] is None  # null until ready
    fields = _envelope(api.get("/agents", limit=101), 422, "validation_error")["details"]["fields"]
    assert "limit" in fields


def test_other_organizations_ids_are_404_like_missing_ones(org, api, other_api):
    agent = AgentFactory(organization=org)
    assert api.get(f"/agents/{agent.public_id}").status_code == 200
    for path in [
        f"/agents/{agent.public_id}",
        "/agents/00000000-0000-0000-0000-000000000000",
        "/agents/not-a-uuid",
    ]:
        _envelope(other_api.get(path), 404, "not_found")
    _envelope(
        other_api.patch(f"/agents/{agent.public_id}", {"system_prompt": "x"}), 404, "not_found"
    )
    _envelope(other_api.delete(f"/agents/{agent.public_id}"), 404, "not_found")
    _envelope(other_api.post(f"/agents/{agent.public_id}/retry"), 404, "not_found")
    _envelope(other_api.get(f"/agents/{agent.public_id}/history"), 404, "not_found")
    agent.refresh_from_db()
    assert agent.archived_at is None


def test_unknown_api_path_is_a_json_404(api):
    _envelope(api.get("/nothing-here"), 404, "not_found")


def test_validation_errors_name_the_fields(api):
    error = _envelope(api.post("/agents", {"prompt": "no name"}), 422, "validation_error")
    assert "name" in error["details"]["fields"]
    error = _envelope(
        api.post("/agents", {"name": "x", "model": "video-9"}), 422, "validation_error"
    )
    assert "model" in error["details"]["fields"]
    assert not Agent.objects.exists()


def test_a_name_of_only_spaces_is_a_field_error(api):
    error = _envelope(
        api.post("/agents", {"name": "   ", "prompt": "A calm guide"}), 422, "validation_error"
    )
    assert error["details"]["fields"] == {"name": ["Give the agent a name."]}
    assert not Agent.objects.exists()


def test_invalid_json_is_an_envelope_not_a_500(api):
    response = api.client.post(
        "/api/v1/agents", data="{not json", content_type="application/json", headers=api.headers
    )
    assert response.status_code in (400, 422)
    assert "error" in response.json()


def test_preflight_mirrors_the_web_form(api):
    error = _envelope(
        api.post("/agents", {"name": "x", "image_base64": base64.b64encode(b"text").decode()}),
        422,
        "validation_error",
    )
    assert "image_base64" in error["details"]["fields"]
    error = _envelope(api.post("/agents", {"name": "x"}), 422, "validation_error")
    assert "prompt" in error["details"]["fields"]  # no image: a prompt is required
    error = _envelope(
        api.post("/agents", {"name": "x", "image_url": "http://127.0.0.1/face.png"}),
        422,
        "validation_error",
    )
    assert "image_url" in error["details"]["fields"]
    assert not Agent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_create_poll_patch_history_retry_delete(sandbox_api, org, api, settings):
    body = {
        "name": "Kiosk",
        "prompt": "A helpful kiosk assistant",
        "image_base64": base64.b64encode(png_bytes()).decode(),
        "audio_base64": base64.b64encode(wav_bytes()).decode(),
    }
    created = api.post("/agents", body)
    assert created.status_code == 202, created.content
    agent = created.json()
    assert agent["status"] == "submitting" and agent["agent_code"] is None
    fetched = api.get(f"/agents/{agent['id']}").json()
    assert fetched["status"] == "processing"  # the outbox task sent it to the sandbox
    _envelope(api.patch(f"/agents/{agent['id']}", {"system_prompt": "x"}), 409, "agent_not_ready")
    history = api.get(f"/agents/{agent['id']}/history").json()["items"]
    assert [h["to_status"] for h in history] == ["submitting", "processing"]
    _envelope(api.post(f"/agents/{agent['id']}/retry"), 409, "agent_not_failed")
    assert api.delete(f"/agents/{agent['id']}").status_code == 204
    _envelope(api.get(f"/agents/{agent['id']}"), 404, "not_found")


@pytest.mark.django_db(transaction=True)
def test_idempotent_create_replays_and_detects_reuse(sandbox_api, org, api):
    body = {"name": "Once", "prompt": "Only one of me"}
    headers = {"Idempotency-Key": "order-42"}
    first = api.post("/agents", body, headers)
    again = api.post("/agents", body, headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Idempotency-Replayed"] == "true" and "Idempotency-Replayed" not in first
    assert Agent.objects.count() == 1
    reused = api.post("/agents", {**body, "name": "Twice"}, headers)
    _envelope(reused, 409, "idempotency_key_reused")
    # Keys are per API key: the same key elsewhere is a new request (see below).
    assert Agent.objects.count() == 1


def test_duplicate_while_the_first_runs_is_409(org, api):
    from portal import idempotency
    from portal.models import ApiIdempotencyKey

    body = b'{"name": "Slow", "prompt": "p"}'
    ApiIdempotencyKey.objects.create(
        organization=org,
        api_key=ApiKey.objects.get(),
        key="busy",
        request_hash=idempotency.request_fingerprint(
            method="POST", path="/api/v1/agents", body=body
        ),
    )
    response = api.client.post(
        "/api/v1/agents",
        data=body,
        content_type="application/json",
        headers={**api.headers, "Idempotency-Key": "busy"},
    )
    _envelope(response, 409, "request_in_progress")


def test_rate_limit_headers_and_429(org, api, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    for remaining in ["2", "1", "0"]:
        response = api.get("/organization")
        assert response.status_code == 200
        assert response["X-RateLimit-Limit"] == "3"
        assert response["X-RateLimit-Remaining"] == remaining
        assert int(response["X-RateLimit-Reset"]) > timezone.now().timestamp()
    limited = api.get("/organization")
    error = _envelope(limited, 429, "rate_limited")
    assert int(limited["Retry-After"]) >= 1 and error["details"]["retry_after"] >= 1
    assert limited["X-RateLimit-Remaining"] == "0"


def test_last_used_is_written_at_most_once_a_minute(org):
    key = make_key(org)
    client = ApiClient(key)
    client.get("/organization")
    first = ApiKey.objects.get().last_used_at
    client.get("/organization")
    assert ApiKey.objects.get().last_used_at == first


def test_status_mapping_hides_upstream_intermediates(org, api):
    agent = AgentFactory(organization=org, status=AgentStatus.SUCCESS, progress=0.5)
    assert api.get(f"/agents/{agent.public_id}").json()["status"] == "generating"


def test_pages_never_overlap_when_agents_share_their_creation_time(org, api):
    created_at = timezone.now()
    ids = {str(AgentFactory(organization=org, created_at=created_at).public_id) for _ in range(7)}
    seen = [
        item["id"]
        for offset in (0, 3, 6)
        for item in api.get("/agents", limit=3, offset=offset).json()["items"]
    ]
    assert sorted(seen) == sorted(ids)  # each exactly once


def test_list_items_are_exactly_the_detail_answers(org, api):
    AgentFactory(organization=org, status=AgentStatus.COMPLETED, progress=0.3, code="A1")
    AgentFactory(
        organization=org,
        status=AgentStatus.READY,
        progress=0.9,
        code="A2",
        supported_models=["essence-1", "expression-2"],
    )
    AgentFactory(organization=org, status=AgentStatus.FAILED, error_message="No face")
    items = api.get("/agents").json()["items"]
    assert len(items) == 3
    for item in items:
        assert api.get(f"/agents/{item['id']}").json() == item
    ready = next(item for item in items if item["status"] == "ready")
    assert ready["progress"] == 1.0 and ready["agent_code"] == "A2"
    assert ready["supported_models"] == ["essence-1", "expression-2"]
    assert all(item["supported_models"] == [] for item in items if item is not ready)


def test_a_large_count_is_remembered_briefly_a_small_one_is_exact(org, api, monkeypatch):
    from agents import selectors

    monkeypatch.setattr(selectors, "COUNT_EXACT_BELOW", 4)
    AgentFactory.create_batch(3, organization=org)
    assert api.get("/agents", limit=2).json()["count"] == 3  # exact: counted
    assert api.get("/agents", limit=5).json()["count"] == 3  # exact: a page that is not full
    AgentFactory.create_batch(2, organization=org)
    assert api.get("/agents", limit=2).json()["count"] == 5  # 5 >= 4: now remembered...
    AgentFactory(organization=org)
    assert api.get("/agents", limit=2).json()["count"] == 5  # ...for a few seconds
    assert api.get("/agents", limit=2, status="ready").json()["count"] == 6  # per filter
    assert api.get("/agents", limit=10).json()["count"] == 6  # a short page is always exact


def test_an_idempotency_key_older_than_a_day_is_forgotten(org, api):
    from datetime import timedelta

    from portal import idempotency
    from portal.models import ApiIdempotencyKey

    body = b'{"name": "Again", "prompt": "p"}'
    ApiIdempotencyKey.objects.create(
        organization=org,
        api_key=ApiKey.objects.get(),
        key="old",
        request_hash=idempotency.request_fingerprint(
            method="POST", path="/api/v1/agents", body=body
        ),
        status_code=202,
        response_body={"id": "from yesterday"},
        created_at=timezone.now() - idempotency.TTL - timedelta(minutes=1),
    )

    def post():
        return api.client.post(
            "/api/v1/agents",
            data=body,
            content_type="application/json",
            headers={**api.headers, "Idempotency-Key": "old"},
        )

    first = post()
    assert first.status_code == 202 and "Idempotency-Replayed" not in first
    assert first.json()["id"] != "from yesterday" and Agent.objects.count() == 1
    again = post()  # the new record replays now
    assert again["Idempotency-Replayed"] == "true" and again.json() == first.json()
    assert Agent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_idempotency_keys_belong_to_one_api_key_and_come_after_the_scope_check(sandbox_api, org):
    """A read-only key cannot replay another key's create answer (prompt included), and another
    writing key with the same Idempotency-Key makes its own request."""
    writer = ApiClient(make_key(org, scopes=["agents:write", "agents:read"]))
    body = {"name": "Secretive", "prompt": "The private prompt"}
    headers = {"Idempotency-Key": "shared-7"}
    first = writer.post("/agents", body, headers)
    assert first.status_code == 202
    reader = ApiClient(make_key(org, scopes=["sessions:read"]))
    refused = reader.post("/agents", body, headers)
    error = _envelope(refused, 403, "forbidden")
    assert "private prompt" not in refused.content.decode() and "scope" in error["message"]
    assert "Idempotency-Replayed" not in refused
    other_writer = ApiClient(make_key(org, scopes=["agents:write"]))
    own = other_writer.post("/agents", body, headers)
    assert own.status_code == 202 and "Idempotency-Replayed" not in own
    assert own.json()["id"] != first.json()["id"]
    assert Agent.objects.count() == 2
    again = writer.post("/agents", body, headers)  # the first key still replays its own
    assert again["Idempotency-Replayed"] == "true" and again.json() == first.json()


@pytest.mark.parametrize("prompt", [" ", "\n\t  "])
def test_a_blank_prompt_through_patch_is_a_422_not_an_upstream_error(org, api, prompt, caplog):
    """A domain error of the service (nothing reached bitHuman) is the client's, in the
    envelope, and nothing is logged as an error."""
    agent = AgentFactory(organization=org, status=AgentStatus.READY, code="A77", system_prompt="Hi")
    with caplog.at_level("INFO"):
        response = api.patch(f"/agents/{agent.public_id}", {"system_prompt": prompt})
    error = _envelope(response, 422, "validation_error")
    assert error["details"]["fields"] == {"system_prompt": ["The prompt cannot be empty."]}
    assert not [record for record in caplog.records if record.levelname in {"ERROR", "CRITICAL"}]
    agent.refresh_from_db()
    assert agent.system_prompt == "Hi"
