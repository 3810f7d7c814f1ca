"""The client's file upload, model add and model download against the sandbox, over HTTP (the
harness checks every request and answer against openapi.yaml)."""

from __future__ import annotations

import httpx
import pytest

from portal.bithuman import BithumanClient
from portal.bithuman.errors import ConflictError, ValidationError
from tests.conformance.conftest import Tenant
from tests.conformance.test_client_sandbox import agent_ready
from tests.media import png_bytes, wav_bytes


def test_file_upload_by_data_and_by_url(client: BithumanClient):
    image = png_bytes()
    uploaded = client.file_upload(file_data=image, file_name="face.png", file_type="image")
    assert uploaded.file_size == len(image) and uploaded.mime_type == "image/png"
    assert httpx.get(uploaded.file_url).content == image
    linked = client.file_upload(file_url="https://example.com/voice.wav", file_type="audio")
    assert linked.original_source == "https://example.com/voice.wav"
    assert linked.asset_category == "audio"
    with pytest.raises(ValidationError) as refused:
        client.file_upload(file_data=wav_bytes(1), file_name="voice.exe")
    assert refused.value.code == "UNSUPPORTED_TYPE" and refused.value.http_status == 415
    with pytest.raises(ValidationError) as failed:
        client.file_upload(file_url="https://files.invalid/face.png")
    assert failed.value.code == "DOWNLOAD_FAILED"
    with pytest.raises(ValueError):
        client.file_upload(file_data=image)  # no name: bitHuman sorts files by extension


def test_generate_takes_an_uploaded_url(client: BithumanClient, tenant: Tenant):
    url = client.file_upload(file_data=png_bytes(), file_name="face.png").file_url
    code = agent_ready(client, tenant, image=url)
    assert client.agent_get(code=code).image_url == url


def test_model_add_and_download(client: BithumanClient, tenant: Tenant):
    code = agent_ready(client, tenant, model="essence-1")
    added = client.agent_model_add(code=code, model="expression-2")
    assert (added.status, added.credits, added.model) == ("processing", 2000, "expression-2")
    assert client.agent_model_add(code=code, model="expression-2").credits == 0
    tenant.advance(10_000)
    assert "expression-2" in client.agent_status_get(agent_id=code).supported_models

    download = client.agent_model_download(code=code, model="essence-1")
    assert download.filename == f"{code}.imx" and download.expires_in is None
    assert httpx.get(download.url).content.startswith(b"BITHUMAN-SANDBOX-IMX")
    with pytest.raises(ConflictError) as missing:
        client.agent_model_download(code=code, model="essence-2")
    assert missing.value.code == "MODEL_NOT_GENERATED"
