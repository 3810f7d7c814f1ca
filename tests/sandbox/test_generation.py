"""Generation: the state machine on the sandbox clock, failures with refunds, billing, input
validation and Idempotency-Key replays."""

import time

import pytest

from sandbox import catalog
from sandbox.models import SandboxAgent

pytestmark = pytest.mark.django_db(transaction=True)

# (simulated seconds into an expression-1 generation of 90 s, status, step)
WALK = [
    (0, "processing", "payment"),
    (3.6, "completed", "persona"),
    (9, "generating", "persona"),
    (16, "generating", "voice_image"),
    (21, "success", "voice_image"),
    (27, "generating", "video"),
    (37, "success", "video"),
    (54, "generating", "lip_sync"),
    (89, "generating", "lip_sync"),
    (90, "ready", "done"),
]


def test_generate_answers_the_spec_shape(api):
    response = api.post("/v1/agent/generate", json={"prompt": "A friendly fitness coach"})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["status"] == "processing"
    assert body["message"] == "Agent generation started"
    assert SandboxAgent.objects.get(code=body["agent_id"]).model == "expression-1"
    assert "Idempotency-Replayed" not in response.headers


def test_status_walks_every_intermediate_state_to_ready(api):
    agent_id = api.generate()
    seen, progress, clock = [], 0.0, 0.0
    for at, status, step in WALK:
        api.advance(at - clock)
        clock = at
        data = api.status(agent_id)
        assert (data["status"], data["current_step"]) == (status, step), at
        assert data["progress"] >= progress  # never moves back
        progress = data["progress"]
        seen.append(data["status"])
        if status != "ready":
            assert "model_url" not in data
            assert data["supported_models"] == []
    assert seen.count("completed") == 1
    assert seen.count("success") == 2
    data = api.status(agent_id)
    assert data["progress"] == 1.0
    assert data["progress_msg"] == "Agent ready"
    assert data["supported_models"] == ["expression-1"]
    assert data["model_url"].endswith(f"/sandbox/files/{agent_id}.imx")
    assert api.http.get(data["model_url"]).status_code == 200


def test_progress_values_match_the_documented_steps(api):
    agent_id = api.generate()
    assert api.status(agent_id)["progress"] == pytest.approx(0.02)
    api.advance(16)
    assert api.status(agent_id)["progress"] == pytest.approx(0.20)
    api.advance(11)
    assert api.status(agent_id)["progress"] == pytest.approx(0.45)
    api.advance(30)
    assert 0.70 <= api.status(agent_id)["progress"] <= 0.99


def test_transitions_are_persisted(api):
    agent_id = api.generate()
    api.advance(30)
    api.status(agent_id)
    agent = SandboxAgent.objects.get(code=agent_id)
    assert (agent.status, agent.current_step) == ("generating", "video")
    api.advance(100)
    api.status(agent_id)
    agent.refresh_from_db()
    assert agent.status == "ready"
    assert agent.finished_at is not None


@pytest.mark.parametrize(
    ("model", "version", "engine", "seconds"),
    [
        (None, None, "expression-1", 90),
        ("expression", "v2", "expression-2", 3600),
        ("essence", None, "essence-1", 210),
        ("essence", "v2", "essence-2", 2400),
        ("essence-2-max", None, "essence-2", 2400),
        ("auto", None, "essence-2", 2400),
    ],
)
def test_longer_models_take_proportionally_longer(api, model, version, engine, seconds):
    body = {k: v for k, v in {"model": model, "version": version}.items() if v}
    agent_id = api.generate(**body)
    assert SandboxAgent.objects.get(code=agent_id).model == engine
    api.advance(seconds - 1)
    assert api.status(agent_id)["status"] != "ready"
    api.advance(1)
    data = api.status(agent_id)
    assert data["status"] == "ready"
    assert data["supported_models"] == catalog.SUPPORTED_MODELS[engine]


def test_auto_routes_stylized_subjects_to_expression_2(api):
    agent_id = api.generate(prompt="A cartoon robot mascot", model="auto")
    assert SandboxAgent.objects.get(code=agent_id).model == "expression-2"
    assert api.credits() == 10_000 - 2000


def test_essence_2_rejects_a_stylized_subject_without_charging(api):
    response = api.post(
        "/v1/agent/generate", json={"prompt": "A cartoon fox", "model": "essence-2"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "MODEL_SUBJECT_MISMATCH"
    assert api.credits() == 10_000


def test_the_time_scale_setting_runs_the_real_clock(sandbox_client, settings):
    settings.SANDBOX_TIME_SCALE = 900  # expression-1's 90 s in 0.1 s
    client = sandbox_client(time_scale=None)
    agent_id = client.generate()
    time.sleep(0.3)
    assert client.status(agent_id)["status"] == "ready"


def test_the_default_time_scale_makes_expression_1_take_about_30_seconds(sandbox_client):
    client = sandbox_client(time_scale=None)
    agent_id = client.generate()
    agent = SandboxAgent.objects.get(code=agent_id)
    assert agent.duration_seconds / agent.time_scale == pytest.approx(30)
    assert client.status(agent_id)["status"] == "processing"


# --- Failure scenarios --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"image": "https://cdn.example.invalid/face.jpg"},
        {"image": "https://example.com/fail-early/face.jpg"},
        {"prompt": "A coach [fail-early]"},
        {"prompt": "A coach", "audio": "https://voices.example.invalid/v.wav"},
    ],
)
def test_failing_early_refunds_the_credits(api, body):
    response = api.post("/v1/agent/generate", json=body)
    assert response.status_code == 200  # accepted at once, like the real API
    agent_id = response.json()["agent_id"]
    assert api.credits() == 10_000 - 250
    api.advance(10)
    assert api.status(agent_id)["status"] != "failed"
    api.advance(6)
    data = api.status(agent_id)
    assert data["status"] == "failed"
    assert data["current_step"] == "voice_image"
    assert "Failed to download after 3 attempts: 404" in data["error_message"]
    assert api.credits() == 10_000
    api.advance(1000)
    assert api.status(agent_id)["status"] == "failed"  # terminal states absorb
    assert api.credits() == 10_000  # refunded once


def test_failing_late_at_lip_sync_refunds_the_credits(api):
    agent_id = api.generate(prompt="A coach [fail-late]", model="essence", version="v2")
    assert api.credits() == 10_000 - 500
    api.advance(2400 * 0.8)
    data = api.status(agent_id)
    assert (data["status"], data["current_step"]) == ("generating", "lip_sync")
    api.advance(2400 * 0.1)
    data = api.status(agent_id)
    assert (data["status"], data["current_step"]) == ("failed", "lip_sync")
    assert data["error_message"].startswith("Lip sync failed")
    assert data["progress"] > 0.7
    assert api.credits() == 10_000


def test_a_normal_image_url_does_not_fail(api):
    agent_id = api.generate(image="https://example.com/face.jpg", prompt=None)
    api.advance(1000)
    data = api.status(agent_id)
    assert data["status"] == "ready"
    assert data["image_url"] == "https://example.com/face.jpg"


# --- Billing and validation ---------------------------------------------------------------------


def test_short_balance_is_402_and_charges_nothing(sandbox_client):
    client = sandbox_client(credits=300)
    response = client.post("/v1/agent/generate", json={"prompt": "x", "model": "expression-2"})
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "INSUFFICIENT_BALANCE"
    client.generate()  # 250 fits
    response = client.post("/v1/agent/generate", json={"prompt": "x"})
    assert response.status_code == 402
    assert client.credits() == 50
    assert SandboxAgent.objects.filter(account=client.account).count() == 1


def test_video_input_is_rejected(api):
    response = api.post(
        "/v1/agent/generate", json={"prompt": "x", "video": "https://example.com/v.mp4"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VIDEO_INPUT_NOT_SUPPORTED"
    assert api.credits() == 10_000


@pytest.mark.parametrize("model", ["my-model", "essence-2-quality", "essence-2-light", ""])
def test_unknown_model_is_a_validation_error(api, model):
    response = api.post("/v1/agent/generate", json={"prompt": "x", "model": model})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert "must be one of: auto, essence, essence-1" in error["message"]


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", "VALIDATION_ERROR"),
        (b"[1, 2]", "VALIDATION_ERROR"),
        (b'"text"', "VALIDATION_ERROR"),
        (b"", "VALIDATION_ERROR"),
        (b"{}", "MISSING_PARAM"),
        (b'{"prompt": 5}', "VALIDATION_ERROR"),
        (b'{"prompt": "x", "transparency": "yes"}', "VALIDATION_ERROR"),
        (b'{"prompt": "x", "aspect_ratio": "4:3"}', "VALIDATION_ERROR"),
        (b'{"prompt": "x", "framing": "waist"}', "VALIDATION_ERROR"),
        (b'{"prompt": "x", "version": "v3"}', "VALIDATION_ERROR"),
        (b'{"prompt": "x", "agent_id": "lower-case"}', "VALIDATION_ERROR"),
        (b'{"prompt": "x", "duration": "10"}', "VALIDATION_ERROR"),
        (b'{"image": "not a url nor base64!"}', "VALIDATION_ERROR"),
        (b'{"prompt": ["x"]}', "VALIDATION_ERROR"),
        (b"\xff\xfe", "VALIDATION_ERROR"),
    ],
)
def test_bad_bodies_are_400_never_500(api, content, code):
    response = api.post(
        "/v1/agent/generate", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code


def test_base64_image_and_custom_agent_id(api):
    agent_id = api.generate(prompt=None, image="aGVsbG8=", agent_id="B12CDE3456")
    assert agent_id == "B12CDE3456"
    data = api.status(agent_id)
    assert data["image_url"].endswith(f"/sandbox/embed/{agent_id}/face.svg")
    taken = api.post("/v1/agent/generate", json={"prompt": "x", "agent_id": "B12CDE3456"})
    assert taken.status_code == 400


def test_generated_codes_look_real(api):
    import re

    for _ in range(5):
        assert re.match(r"^A\d{2}[A-Z]{3}\d{4}$", api.generate())


# --- Idempotency --------------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_answer_verbatim(api):
    headers = {"Idempotency-Key": "order-42"}
    first = api.post("/v1/agent/generate", json={"prompt": "x"}, headers=headers)
    second = api.post("/v1/agent/generate", json={"prompt": "x"}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second.headers["Idempotency-Replayed"] == "true"
    assert "Idempotency-Replayed" not in first.headers
    assert api.credits() == 10_000 - 250  # charged once
    assert SandboxAgent.objects.filter(account=api.account).count() == 1
    other = api.post("/v1/agent/generate", json={"prompt": "x"}, headers={"Idempotency-Key": "b"})
    assert other.json()["agent_id"] != first.json()["agent_id"]


def test_idempotency_keys_are_per_account(sandbox_client):
    one, two = sandbox_client(), sandbox_client()
    headers = {"Idempotency-Key": "same-key"}
    a = one.post("/v1/agent/generate", json={"prompt": "x"}, headers=headers)
    b = two.post("/v1/agent/generate", json={"prompt": "x"}, headers=headers)
    assert a.json()["agent_id"] != b.json()["agent_id"]
    assert "Idempotency-Replayed" not in b.headers


def test_idempotency_keys_expire(api, settings):
    headers = {"Idempotency-Key": "short-lived"}
    first = api.post("/v1/agent/generate", json={"prompt": "x"}, headers=headers)
    settings.SANDBOX_IDEMPOTENCY_TTL = 0
    time.sleep(0.01)
    second = api.post("/v1/agent/generate", json={"prompt": "x"}, headers=headers)
    assert second.json()["agent_id"] != first.json()["agent_id"]
    assert "Idempotency-Replayed" not in second.headers


def test_errors_are_not_stored_under_the_key(sandbox_client):
    client = sandbox_client(credits=0)
    headers = {"Idempotency-Key": "retry-after-top-up"}
    assert (
        client.post("/v1/agent/generate", json={"prompt": "x"}, headers=headers).status_code == 402
    )
    client.configure(credits=1000)
    response = client.post("/v1/agent/generate", json={"prompt": "x"}, headers=headers)
    assert response.status_code == 200
    assert "Idempotency-Replayed" not in response.headers
