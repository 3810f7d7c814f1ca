"""Face and voice go to bitHuman's POST /v1/files/upload first (the sandbox, over HTTP) and
generate gets the returned URLs. bitHuman's refusals (413, 415, a link it cannot download) show
on the field, through the page and the API, before anything is billed: no agent, no credits
spent, what was typed kept.

The sandbox's size and type rules are looser than the portal's own pre-flight, so a file that
passes pre-flight but that bitHuman refuses for size or type cannot come from it: those two
cases answer from respx on the upload route alone (everything else still reaches the sandbox).
"""

from __future__ import annotations

import base64
import re
import uuid

import httpx
import pytest
import respx
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import encode_multipart
from django.urls import reverse

from agents import preflight, services
from agents.models import Agent, AgentStatus
from organizations import connections
from portal.netsafe import UrlFetcher
from sandbox import services as sandbox_services
from sandbox.models import SandboxAgent, SandboxFile
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.media import png_bytes, png_upload, wav_bytes, wav_upload

pytestmark = pytest.mark.django_db(transaction=True)

PUBLIC_IP = "93.184.216.34"


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def public_web(monkeypatch):
    """The public web the pre-flight downloads links from (our machines reach none): every
    https link on example.com answers a PNG face."""

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=png_bytes(), headers={"Content-Type": "image/png"})

    def fetcher(**kwargs):
        return UrlFetcher(
            resolver=lambda host, port: [PUBLIC_IP],
            transport=httpx.MockTransport(handle),
            **kwargs,
        )

    monkeypatch.setattr(preflight, "UrlFetcher", fetcher)


def _account(org):
    connection = connections.connection_get(org=org)
    return sandbox_services.sandbox_account_for_secret(secret=connection.sandbox_secret)


def _form(**overrides):
    data = {
        "submission_id": str(uuid.uuid4()),
        "name": "Ava Museum Guide",
        "system_prompt": "You are Ava, a calm museum guide.",
        "model": "expression-1",
        "aspect_ratio": "16:9",
        "framing": "portrait",
        "image": png_upload("my face.png"),
        "audio": wav_upload("hello.wav"),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def _refuse_uploads(sandbox_api, status: int, code: str):
    """bitHuman's refusal of every upload; the rest of the sandbox answers for real."""
    router = respx.mock(assert_all_called=False)
    router.post(f"{sandbox_api}/v1/files/upload").respond(
        status,
        json={
            "error": {"code": code, "message": f"refused ({code})", "httpStatus": status},
            "status": "error",
            "status_code": status,
        },
        headers={"X-Request-Id": "req_upload_refused"},
    )
    router.route().pass_through()
    return router


def test_the_form_uploads_first_and_generate_gets_the_urls(sandbox_api, org, member):
    response = client_for(member).post(reverse("agent_new", args=[org.slug]), _form())
    assert response.status_code == 302, response.content.decode()[:2000]
    agent = Agent.objects.get()
    assert agent.status == AgentStatus.PROCESSING
    assert agent.image_file_url.startswith(f"{sandbox_api}/assets/")
    assert agent.audio_file_url.startswith(f"{sandbox_api}/assets/")
    upstream = SandboxAgent.objects.get(code=agent.code)
    assert upstream.image_url == agent.image_file_url  # a URL, never base64
    assert upstream.audio_url == agent.audio_file_url
    face = httpx.get(agent.image_file_url)
    assert face.status_code == 200 and face.content.startswith(b"\x89PNG")
    names = sorted(SandboxFile.objects.values_list("asset_category", flat=True))
    assert names == ["audio", "image"]


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [(413, "FILE_TOO_LARGE", "size limit"), (415, "UNSUPPORTED_TYPE", "does not accept")],
)
def test_a_refused_file_shows_on_its_field_and_nothing_is_billed(
    sandbox_api, org, member, status, code, words
):
    credits = _account(org).credits
    with _refuse_uploads(sandbox_api, status, code):
        response = client_for(member).post(reverse("agent_new", args=[org.slug]), _form())
    html = response.content.decode()
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert words in errors["image"][0] and "req_upload_refused" in errors["image"][0]
    assert not Agent.objects.exists() and not SandboxAgent.objects.exists()
    assert _account(org).credits == credits
    # What was typed is kept; the refused face is not kept, the voice sample is.
    assert 'value="Ava Museum Guide"' in html
    assert "You are Ava, a calm museum guide." in html
    assert re.search(r'name="kept_audio_id"', html) and not re.search(r'name="kept_image_id"', html)


def test_a_link_bithuman_cannot_download_shows_on_the_link(sandbox_api, org, member, public_web):
    link = "https://example.com/fail-download/face.png"
    response = client_for(member).post(
        reverse("agent_new", args=[org.slug]), _form(image=None, image_url=link)
    )
    assert response.status_code == 400
    assert "could not download" in response.context["form"].errors["image_url"][0]
    assert f'value="{link}"' in response.content.decode()
    assert not Agent.objects.exists() and not SandboxAgent.objects.exists()


def test_a_link_is_uploaded_by_url(sandbox_api, org, member, public_web):
    link = "https://example.com/people/face.png"
    response = client_for(member).post(
        reverse("agent_new", args=[org.slug]), _form(image=None, image_url=link)
    )
    assert response.status_code == 302
    agent = Agent.objects.get()
    assert agent.image_url == link  # the customer's link, shown on the page
    stored = SandboxFile.objects.get(original_source=link)
    assert agent.image_file_url.endswith(stored.name)
    assert SandboxAgent.objects.get(code=agent.code).image_url == agent.image_file_url


def test_the_api_uploads_base64_media_and_refuses_on_the_field(sandbox_api, org):
    api = ApiClient(make_key(org))
    body = {
        "name": "Kiosk",
        "prompt": "A helpful kiosk assistant",
        "image_base64": base64.b64encode(png_bytes()).decode(),
        "audio_base64": base64.b64encode(wav_bytes()).decode(),
    }
    credits = _account(org).credits
    with _refuse_uploads(sandbox_api, 413, "FILE_TOO_LARGE"):
        refused = api.post("/agents", body)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "file_too_large"
    assert "size limit" in error["details"]["fields"]["image_base64"][0]
    assert not Agent.objects.exists() and _account(org).credits == credits

    created = api.post("/agents", body)
    assert created.status_code == 202, created.content
    agent = Agent.objects.get()
    assert agent.image.name.endswith(".png") and agent.audio.name.endswith(".wav")
    upstream = SandboxAgent.objects.get(code=agent.code)
    assert upstream.image_url == agent.image_file_url != ""
    assert upstream.audio_url == agent.audio_file_url != ""


def test_the_api_refuses_a_link_bithuman_cannot_download(sandbox_api, org, public_web):
    api = ApiClient(make_key(org))
    refused = api.post(
        "/agents", {"name": "Kiosk", "image_url": "https://example.com/fail-download/face.png"}
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "download_failed"
    assert "image_url" in refused.json()["error"]["details"]["fields"]
    assert not Agent.objects.exists()


def test_bithuman_out_of_reach_at_the_form_the_submission_uploads(sandbox_api, org, member):
    unreachable = respx.mock(assert_all_called=False)
    unreachable.post(f"{sandbox_api}/v1/files/upload").mock(
        side_effect=httpx.ConnectError("refused")
    )
    unreachable.route().pass_through()
    with unreachable:
        response = client_for(member).post(reverse("agent_new", args=[org.slug]), _form(audio=None))
    assert response.status_code == 302
    agent = Agent.objects.get()
    assert agent.status == AgentStatus.SUBMITTING and not agent.image_file_url
    assert not SandboxAgent.objects.exists()  # its first submission met the same outage
    # The task's retry (bitHuman back) uploads it, then generates with its URL.
    services.agent_submit(agent_pk=agent.pk)
    agent.refresh_from_db()
    assert agent.status == AgentStatus.PROCESSING, agent.error_message
    assert agent.image_file_url.startswith(f"{sandbox_api}/assets/")
    assert SandboxAgent.objects.get(code=agent.code).image_url == agent.image_file_url


def test_the_api_takes_multipart_files_and_names_the_field(sandbox_api, org):
    api = ApiClient(make_key(org))
    form = {
        "name": "Kiosk",
        "prompt": "A helpful kiosk assistant",
        "image": png_upload("face.png"),
        "audio": wav_upload("voice.wav"),
    }
    credits = _account(org).credits
    with _refuse_uploads(sandbox_api, 415, "UNSUPPORTED_TYPE"):
        refused = api.client.post("/api/v1/agents/multipart", form, headers=api.headers)
    assert refused.status_code == 422, refused.content
    error = refused.json()["error"]
    assert error["code"] == "unsupported_type"
    assert "does not accept" in error["details"]["fields"]["image"][0]
    assert not Agent.objects.exists() and _account(org).credits == credits

    bad = api.client.post(
        "/api/v1/agents/multipart",
        {"name": "Kiosk", "image": SimpleUploadedFile("face.png", b"not an image")},
        headers=api.headers,
    )
    assert bad.status_code == 422 and "image" in bad.json()["error"]["details"]["fields"]

    form = {**form, "image": png_upload("face.png"), "audio": wav_upload("voice.wav")}
    created = api.client.post("/api/v1/agents/multipart", form, headers=api.headers)
    assert created.status_code == 202, created.content
    agent = Agent.objects.get(public_id=created.json()["id"])
    upstream = SandboxAgent.objects.get(code=agent.code)
    assert upstream.image_url == agent.image_file_url != ""
    assert upstream.audio_url == agent.audio_file_url != ""


def test_a_multipart_create_with_an_idempotency_key_runs_once(sandbox_api, org):
    """A client retrying a multipart create (a new boundary each time, as HTTP libraries do)
    gets the first answer back, not a second agent; other files under the key are refused."""
    api = ApiClient(make_key(org))

    def send(image: bytes, boundary: str):
        form = {
            "name": "Kiosk",
            "prompt": "A helpful kiosk assistant",
            "image": SimpleUploadedFile("face.png", image, content_type="image/png"),
            "audio": SimpleUploadedFile("voice.wav", wav_bytes(), content_type="audio/wav"),
        }
        return api.client.post(
            "/api/v1/agents/multipart",
            encode_multipart(boundary, form),
            content_type=f"multipart/form-data; boundary={boundary}",
            headers={**api.headers, "Idempotency-Key": "kiosk-1"},
        )

    first = send(png_bytes(), "first-boundary")
    again = send(png_bytes(), "second-boundary")
    assert first.status_code == again.status_code == 202, first.content
    assert again.json() == first.json() and again["Idempotency-Replayed"] == "true"
    assert Agent.objects.count() == 1 and SandboxAgent.objects.count() == 1
    other = send(png_bytes(size=700), "third-boundary")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert Agent.objects.count() == 1
