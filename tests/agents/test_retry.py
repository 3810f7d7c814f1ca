"""Retry is the same agent (issue 16, item 8): a new attempt in the same row and one history,
with the face, the voice or the prompt replaced first if wanted (page and API, the sandbox)."""

import base64
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from agents import poller, services
from agents.models import Agent, AgentStatus, GenerationAttempt, PendingUpload, PromptRevision
from agents.preflight import MediaSource
from tests.agents import outside
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.media import png_bytes, wav_bytes, wav_upload

pytestmark = pytest.mark.django_db(transaction=True)

BAD_VOICE = "https://voices.example.invalid/voice.wav"  # the sandbox cannot download it


def _poll(org, agent: Agent) -> Agent:
    outside.clock_advance(org, 3600)
    Agent.objects.filter(pk=agent.pk).update(next_poll_at=agent.created_at)
    poller.tick()
    agent.refresh_from_db()
    return agent


def _failed_agent(org, member) -> Agent:
    """An agent whose voice link bitHuman could not download (created without the form's
    pre-flight, as an older agent or another path might have been): its submission's upload
    through /v1/files/upload is refused, and the agent fails with bitHuman's message."""
    agent = services.agent_create(
        actor=member,
        name="Fail Late Bot",
        system_prompt="You are Bo, a cheerful host.",
        model="expression-1",
        aspect_ratio="16:9",
        framing="portrait",
        transparency=False,
        image=MediaSource(),
        audio=MediaSource(url=BAD_VOICE),
    )
    agent = _poll(org, Agent.objects.get(pk=agent.pk))
    assert agent.status == AgentStatus.FAILED and "Could not download" in agent.error_message
    assert BAD_VOICE in agent.error_message
    return agent


def test_retry_with_a_new_voice_is_a_second_attempt_of_the_same_agent(sandbox_api, org, member):
    agent = _failed_agent(org, member)
    first_code, first_voice = agent.code, agent.audio_file_url
    client = client_for(member)
    detail = reverse("agent_detail", args=[org.slug, agent.public_id])
    page = client.get(detail).content.decode()
    assert 'id="retry-form"' in page and "New voice sample" in page
    assert "points at the voice" in page  # what bitHuman's failure message names

    response = client.post(
        reverse("agent_retry", args=[org.slug, agent.public_id]),
        {"system_prompt": agent.system_prompt, "audio": wav_upload()},
    )
    assert response["Location"] == detail
    assert Agent.objects.count() == 1  # one row: no second "Fail Late Bot"
    agent.refresh_from_db()
    # The refused upload started nothing at bitHuman; the retry is the first generation.
    assert first_code == "" and agent.attempt == 2 and agent.code
    assert agent.audio and not agent.audio_url
    agent = _poll(org, agent)
    assert agent.status == AgentStatus.READY
    # The new voice went to bitHuman's upload: the first attempt's file URL is not reused.
    assert agent.audio_file_url and agent.audio_file_url != first_voice

    attempts = list(GenerationAttempt.objects.filter(agent=agent))
    assert [(a.number, a.code, a.status) for a in attempts] == [
        (1, first_code, "failed"),
        (2, "", ""),
    ]
    assert attempts[1].changes == ["voice"] and "Could not download" in attempts[0].error_message
    # One history: both attempts' rows, the retry between them.
    history = list(agent.status_changes.values_list("attempt", "to_status"))
    assert (1, "failed") in history and (2, "submitting") in history and history[-1][1] == "ready"
    page = client.get(detail).content.decode()
    assert page.count('data-testid="attempt"') == 2 and "Could not download" in page
    assert "with a new voice" in page
    # The prompt was kept: no new revision.
    assert PromptRevision.objects.filter(agent=agent).count() == 1


def test_a_failed_generation_stays_at_bithuman_but_is_never_offered_for_import(
    sandbox_api, org, member
):
    agent = services.agent_create(
        actor=member,
        name="Fail Late Bot",
        system_prompt="You are Bo, a cheerful host. [fail-late]",
        model="expression-1",
        aspect_ratio="16:9",
        framing="portrait",
        transparency=False,
        image=MediaSource(),
        audio=MediaSource(),
    )
    agent = _poll(org, Agent.objects.get(pk=agent.pk))
    assert agent.status == AgentStatus.FAILED and agent.code
    first_code = agent.code
    client_for(member).post(
        reverse("agent_retry", args=[org.slug, agent.public_id]),
        {"system_prompt": "You are Bo, a cheerful host."},
    )
    agent.refresh_from_db()
    assert agent.attempt == 2 and agent.code != first_code
    listed = ApiClient(make_key(org)).get("/agents/importable").json()["items"]
    assert first_code not in {item["code"] for item in listed}
    refused = ApiClient(make_key(org)).post("/agents/import", {"codes": [first_code]})
    assert refused.json()["error"]["details"]["codes"][first_code]["code"] == "already_imported"


def test_retry_checks_a_new_face_like_creation_and_keeps_what_was_typed(sandbox_api, org, member):
    agent = _failed_agent(org, member)
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client_for(member).post(
        reverse("agent_retry", args=[org.slug, agent.public_id]),
        {
            "system_prompt": "You are Bo, a calmer host.",
            "image": SimpleUploadedFile("face.png", b"not an image at all"),
            "image_url": "",
        },
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "You are Bo, a calmer host." in body  # what was typed stays
    assert 'id="retry-form"' in body and "errorlist" in body
    agent.refresh_from_db()
    assert (agent.status, agent.attempt) == (AgentStatus.FAILED, 1)


def test_a_refused_retry_keeps_the_new_voice_for_the_next_try(sandbox_api, org, member):
    """The face is refused, the new voice chosen beside it is kept (nothing to choose again)."""
    agent = _failed_agent(org, member)
    client = client_for(member)
    url = reverse("agent_retry", args=[org.slug, agent.public_id])
    response = client.post(
        url,
        {
            "system_prompt": agent.system_prompt,
            "image": SimpleUploadedFile("face.png", b"not an image at all"),
            "audio": wav_upload("my-voice.wav"),
        },
    )
    assert response.status_code == 400
    body = response.content.decode()
    kept = re.search(r'name="kept_audio_id" value="([^"]+)"', body)
    assert kept and "Kept: <strong>my-voice.wav</strong>" in body
    assert 'name="kept_image_id"' not in body  # the refused face is not kept

    response = client.post(
        url, {"system_prompt": agent.system_prompt, "kept_audio_id": kept.group(1)}
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.attempt == 2 and agent.audio and not agent.audio_url
    attempt = GenerationAttempt.objects.get(agent=agent, number=2)
    assert attempt.changes == ["voice"]
    assert not PendingUpload.objects.exists()  # used, then let go
    assert _poll(org, agent).status == AgentStatus.READY


def test_retry_with_a_new_prompt_records_it_in_the_prompt_history(sandbox_api, org, member):
    agent = _failed_agent(org, member)
    client_for(member).post(
        reverse("agent_retry", args=[org.slug, agent.public_id]),
        {"system_prompt": "You are Bo, a quiet host.", "audio_url": ""},
    )
    agent.refresh_from_db()
    assert agent.system_prompt == "You are Bo, a quiet host." and agent.attempt == 2
    assert PromptRevision.objects.filter(agent=agent).first().text == agent.system_prompt
    assert GenerationAttempt.objects.get(agent=agent, number=2).changes == ["prompt"]


def test_the_api_retries_with_replacements_in_the_same_agent(sandbox_api, org, other_org, member):
    agent = _failed_agent(org, member)
    api = ApiClient(make_key(org))
    path = f"/agents/{agent.public_id}/retry"

    bad = api.post(path, {"audio_base64": "%%%"})
    assert bad.status_code == 422 and "audio_base64" in bad.json()["error"]["details"]["fields"]
    not_audio = api.post(path, {"audio_base64": base64.b64encode(png_bytes()).decode()})
    assert not_audio.status_code == 422
    assert ApiClient(make_key(other_org)).post(path, {}).status_code == 404

    voice = base64.b64encode(wav_bytes()).decode()
    body = api.post(path, {"audio_base64": voice}).json()
    assert (body["id"], body["attempt"], body["status"]) == (str(agent.public_id), 2, "processing")
    assert Agent.objects.count() == 1
    again = api.post(path, {})
    assert again.status_code == 409 and again.json()["error"]["code"] == "agent_not_failed"


def test_the_api_retries_with_no_body_at_all(sandbox_api, org, member):
    agent = _failed_agent(org, member)
    from django.test import Client

    response = Client().post(
        f"/api/v1/agents/{agent.public_id}/retry",
        headers={"Authorization": f"Bearer {make_key(org)}"},
    )
    assert response.status_code == 202, response.content
    assert response.json()["attempt"] == 2 and Agent.objects.count() == 1
