"""The new-agent form: files kept across a validation error (held server-side for their user
until the form succeeds or they expire), the upload script's answer, face thumbnails in the
list and the voice sample's player on the agent page."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from agents import uploads
from agents.models import Agent, PendingUpload
from portal.tenancy import Role
from tests.conftest import client_for
from tests.factories import MembershipFactory
from tests.media import png_upload, wav_upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def _form(**overrides):
    data = {
        "submission_id": str(uuid.uuid4()),
        "name": "Ava",
        "system_prompt": "You are Ava, a calm museum guide.",
        "model": "expression-1",
        "aspect_ratio": "16:9",
        "framing": "portrait",
        "image": png_upload("my face.png"),
        "audio": wav_upload("hello.wav"),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def _kept_ids(html: str) -> dict[str, str]:
    return dict(re.findall(r'name="kept_(image|audio)_id" value="([0-9a-f-]{36})"', html))


def test_files_are_kept_across_a_validation_error_then_used(org, member):
    url = reverse("agent_new", args=[org.slug])
    client = client_for(member)
    first = client.post(url, _form(name=""))
    html = first.content.decode()
    assert first.status_code == 400
    assert (
        "Kept: <strong>my face.png</strong>" in html and "Kept: <strong>hello.wav</strong>" in html
    )
    kept = _kept_ids(html)
    assert set(kept) == {"image", "audio"}
    pending = PendingUpload.objects.get(public_id=kept["image"])
    assert pending.organization_id == org.pk and pending.user_id == member.user_id
    stored_path = pending.file.path

    second = client.post(
        url, _form(image=None, audio=None, kept_image_id=kept["image"], kept_audio_id=kept["audio"])
    )
    assert second.status_code == 302
    agent = Agent.objects.get()
    assert agent.image and agent.audio
    assert agent.image.read().startswith(b"\x89PNG") and agent.audio.read()[:4] == b"RIFF"
    assert not PendingUpload.objects.exists()
    import os

    assert not os.path.exists(stored_path)


def test_a_file_that_failed_its_own_check_is_not_kept(org, member):
    fake_png = SimpleUploadedFile("face.png", b"this is text, not an image", "image/png")
    response = client_for(member).post(reverse("agent_new", args=[org.slug]), _form(image=fake_png))
    assert response.status_code == 400
    assert set(_kept_ids(response.content.decode())) == {"audio"}
    assert not Agent.objects.exists()


def test_a_new_choice_replaces_the_kept_file(org, member):
    url = reverse("agent_new", args=[org.slug])
    client = client_for(member)
    kept = _kept_ids(client.post(url, _form(name="")).content.decode())
    again = client.post(
        url,
        _form(
            name="",
            image=png_upload("other.png"),
            audio=None,
            **{
                "kept_image_id": kept["image"],
                "kept_audio_id": kept["audio"],
            },
        ),
    )
    html = again.content.decode()
    assert "Kept: <strong>other.png</strong>" in html and "Kept: <strong>hello.wav</strong>" in html
    assert _kept_ids(html)["audio"] == kept["audio"]


def test_nobody_else_can_use_a_kept_file(org, other_org, member):
    url = reverse("agent_new", args=[org.slug])
    kept = _kept_ids(client_for(member).post(url, _form(name="")).content.decode())
    colleague = MembershipFactory(organization=org, role=Role.MEMBER)
    response = client_for(colleague).post(
        url, _form(image=None, audio=None, kept_image_id=kept["image"], kept_audio_id=kept["audio"])
    )
    agent = Agent.objects.get()
    assert response.status_code == 302 and not agent.image and not agent.audio
    assert PendingUpload.objects.count() == 2  # the owner's, untouched
    stranger = MembershipFactory(organization=other_org, role=Role.MEMBER)
    foreign = client_for(stranger).post(
        reverse("agent_new", args=[other_org.slug]),
        _form(name="", image=None, audio=None, kept_image_id=kept["image"]),
    )
    assert "Kept:" not in foreign.content.decode()


def test_kept_files_expire_and_are_purged(org, member):
    url = reverse("agent_new", args=[org.slug])
    client = client_for(member)
    kept = _kept_ids(client.post(url, _form(name="")).content.decode())
    PendingUpload.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    html = client.post(
        url, _form(name="", image=None, audio=None, **{"kept_image_id": kept["image"]})
    ).content.decode()
    assert "Kept:" not in html
    assert uploads.pending_uploads_purge() == 2
    assert not PendingUpload.objects.exists()


def test_the_upload_script_gets_the_next_page_in_a_header(org, member):
    response = client_for(member).post(
        reverse("agent_new", args=[org.slug]), _form(), headers={"X-Upload-Progress": "1"}
    )
    agent = Agent.objects.get()
    assert response.status_code == 200
    assert response["X-Redirect"] == reverse("agent_detail", args=[org.slug, agent.public_id])


def test_the_form_loads_the_upload_script_with_the_nonce(org, member):
    html = client_for(member).get(reverse("agent_new", args=[org.slug])).content.decode()
    assert re.search(r'<script src="[^"]*agents/upload\.js" nonce="[^"]+" defer>', html)
    assert "data-upload-progress" in html and 'class="upload-progress"' in html


def test_thumbnails_in_the_list_and_the_voice_on_the_agent_page(org, member):
    client = client_for(member)
    client.post(reverse("agent_new", args=[org.slug]), _form())
    agent = Agent.objects.get()
    face = reverse("agent_media", args=[org.slug, agent.public_id, "face"])
    voice = reverse("agent_media", args=[org.slug, agent.public_id, "voice"])
    listing = client.get(reverse("agent_list", args=[org.slug])).content.decode()
    assert f'<img src="{face}" alt="" class="thumb"' in listing
    page = client.get(reverse("agent_detail", args=[org.slug, agent.public_id])).content.decode()
    assert f'<audio controls preload="none" src="{voice}"' in page
    assert f'<img src="{face}" alt="Face of Ava"' in page
    # The members-only media view serves both.
    assert client.get(face).status_code == 200 and client.get(voice).status_code == 200
