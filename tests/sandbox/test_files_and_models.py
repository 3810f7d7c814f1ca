"""The sandbox's POST /v1/files/upload, POST /v1/agent/{code}/models and
GET /v1/agent/{code}/model/download, as api/files.md and api/agents.md document them (every
/v1 answer is also checked against openapi.yaml by the client)."""

import base64

import httpx
import pytest

from tests.media import png_bytes, wav_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def _upload(api, data: bytes, name: str, file_type: str = "auto"):
    body = {"file_data": base64.b64encode(data).decode(), "file_name": name, "file_type": file_type}
    return api.post("/v1/files/upload", json=body)


def test_an_uploaded_image_is_served_at_its_url_and_generate_takes_it(api):
    image = png_bytes()
    answer = _upload(api, image, "my face.png")
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["file_size"] == len(image)
    assert data["mime_type"] == "image/png" and data["asset_category"] == "image"
    assert data["original_source"] == "my face.png"
    served = httpx.get(data["file_url"])
    assert served.status_code == 200 and served.content == image
    assert served.headers["content-type"] == "image/png"

    agent_id = api.generate(image=data["file_url"])
    assert api.get(f"/v1/agent/{agent_id}").json()["data"]["image_url"] == data["file_url"]


def test_sizes_types_and_downloads_are_refused_as_documented(api):
    too_big = _upload(api, b"\xff\xd8\xff" + b"0" * (10 * 1024 * 1024), "face.jpg")
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "FILE_TOO_LARGE"
    # Audio may be 50 MB: 11 MB of it passes.
    assert _upload(api, wav_bytes(1) + b"0" * (11 * 1024 * 1024), "voice.wav").status_code == 200
    for name, file_type in (("face.exe", "auto"), ("noextension", "auto"), ("voice.wav", "image")):
        refused = _upload(api, b"data", name, file_type)
        assert refused.status_code == 415, name
        assert refused.json()["error"]["code"] == "UNSUPPORTED_TYPE"
    failed = api.post(
        "/v1/files/upload", json={"file_url": "https://photos.invalid/me.png", "file_type": "image"}
    )
    assert failed.status_code == 400 and failed.json()["error"]["code"] == "DOWNLOAD_FAILED"
    linked = api.post("/v1/files/upload", json={"file_url": "https://example.com/a/face.jpg"})
    assert linked.status_code == 200
    assert linked.json()["data"]["original_source"] == "https://example.com/a/face.jpg"
    bad = api.post("/v1/files/upload", json={"file_data": "%%%", "file_name": "a.png"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "VALIDATION_ERROR"


def test_adding_models_charges_once_and_they_become_launchable(api):
    agent_id = api.ready_agent(prompt="A calm museum guide")
    before = api.credits()

    instant = api.post(f"/v1/agent/{agent_id}/models", json={"model": "expression-1"}).json()
    assert instant["status"] == "ready" and instant["credits"] == 0  # already its own model

    started = api.post(f"/v1/agent/{agent_id}/models", json={"model": "expression-2"}).json()
    assert started["status"] == "processing" and started["credits"] == 2000
    assert "expression-2" not in started["supported_models"]
    again = api.post(f"/v1/agent/{agent_id}/models", json={"model": "expression-2"}).json()
    assert again["credits"] == 0 and again["status"] == "processing"
    assert api.credits() == before - 2000

    api.advance(4000)
    assert "expression-2" in api.status(agent_id)["supported_models"]

    # essence-2 trains from a stored identity video, which an expression creation lacks.
    missing = api.post(f"/v1/agent/{agent_id}/models", json={"model": "essence-2"})
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "MODEL_PREREQUISITE_MISSING"
    unknown = api.post(f"/v1/agent/{agent_id}/models", json={"model": "essence-2-max"})
    assert unknown.status_code == 400 and "essence-1" in unknown.json()["error"]["message"]


def test_models_are_added_to_ready_agents_of_the_account_only(api, sandbox_client):
    generating = api.generate()
    refused = api.post(f"/v1/agent/{generating}/models", json={"model": "essence-1"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "AGENT_NOT_READY"
    other = sandbox_client()
    foreign = other.post(f"/v1/agent/{generating}/models", json={"model": "essence-1"})
    assert foreign.status_code == 404


def test_model_download_follows_the_documented_gates(api):
    agent_id = api.ready_agent(model="essence-1")
    answer = api.get(f"/v1/agent/{agent_id}/model/download", params={"redirect": "false"})
    data = answer.json()["data"]
    assert data["model"] == "essence-1" and data["filename"] == f"{agent_id}.imx"
    assert data["expires_in"] is None
    assert httpx.get(data["url"]).content.startswith(b"BITHUMAN-SANDBOX-IMX")
    redirect = api.http.get(f"/v1/agent/{agent_id}/model/download")  # a 302 has no JSON
    assert redirect.status_code == 302 and redirect.headers["location"] == data["url"]

    not_yet = api.get(f"/v1/agent/{agent_id}/model/download", params={"model": "expression-2"})
    assert not_yet.status_code == 409
    assert not_yet.json()["error"]["code"] == "MODEL_NOT_GENERATED"

    expression = api.ready_agent()
    none = api.get(f"/v1/agent/{expression}/model/download")
    assert none.status_code == 400
    assert none.json()["error"]["code"] == "MODEL_NOT_DOWNLOADABLE"
