"""Hostile uploads end to end: the new-agent form and `POST /api/v1/agents` answer a clear error
next to the field and store nothing (no agent row, no audit entry, no file under MEDIA_ROOT),
whatever the file: another type behind the right extension, a truncated file, a decompression
bomb, a file over the size limit. File names never lead out of the media folder.

(The checks themselves are unit-tested in tests/agents/test_preflight.py; here they are
exercised through HTTP, with real multipart and base64 bodies.)
"""

from __future__ import annotations

import base64
import io
import json
import struct
import uuid
import zlib
from pathlib import Path

import pytest
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import reverse
from PIL import Image

from activity.models import AuditEvent
from agents.models import Agent
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.media import png_bytes, wav_bytes

pytestmark = pytest.mark.django_db

NOT_AN_IMAGE = "is not a JPEG, PNG or WebP file"
NOT_AUDIO = "is not a WAV, MP3, M4A or OGG file"
DAMAGED = "may be damaged or incomplete"


def _image(fmt: str, size: tuple[int, int] = (640, 640)) -> bytes:
    out = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(out, format=fmt)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 30_000) -> bytes:
    """A tiny PNG declaring 30,000 x 30,000 pixels (900 million) of highly compressible rows."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side * 3 + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")
    )


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


# (case, form field, file name, content, words the error must contain)
HOSTILE_FILES = [
    ("text named .png", "image", "face.png", b"just some notes\n" * 50, NOT_AN_IMAGE),
    ("markup named .png", "image", "face.png", b"<svg onload=alert(1)></svg>" * 9, NOT_AN_IMAGE),
    ("GIF named .jpg", "image", "face.jpg", _image("GIF"), NOT_AN_IMAGE),
    ("PDF named .webp", "image", "face.webp", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" * 40, NOT_AN_IMAGE),
    ("PNG named .wav", "audio", "voice.wav", png_bytes(), NOT_AUDIO),
    ("text named .mp3", "audio", "voice.mp3", b"la la la\n" * 60, NOT_AUDIO),
    ("truncated PNG", "image", "face.png", _half(_image("PNG")), DAMAGED),
    ("truncated JPEG", "image", "face.jpg", _half(_image("JPEG")), DAMAGED),
    ("truncated WebP", "image", "face.webp", _half(_image("WEBP")), DAMAGED),
    ("truncated WAV", "audio", "voice.wav", _half(wav_bytes(5)), DAMAGED),
    ("decompression bomb", "image", "face.png", png_bomb(), "far too many pixels"),
    (
        "over 10 MB",
        "image",
        "face.png",
        png_bytes() + b"\x00" * (10_000_001 - len(png_bytes())),
        "the limit is 10 MB",
    ),
]
CASES = pytest.mark.parametrize(
    ("field", "name", "content", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in HOSTILE_FILES],
)


@pytest.fixture
def media_root(settings, tmp_path) -> Path:
    root = tmp_path / "media"
    settings.MEDIA_ROOT = str(root)
    return root


def stored_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def assert_nothing_stored(media_root: Path) -> None:
    assert not Agent.objects.exists()
    assert not AuditEvent.objects.exists()
    assert stored_files(media_root) == []


def _form(**files: tuple[str, bytes]) -> dict[str, object]:
    from django.core.files.uploadedfile import SimpleUploadedFile

    data: dict[str, object] = {
        "submission_id": str(uuid.uuid4()),
        "name": "Ava",
        "system_prompt": "You are Ava, a calm museum guide.",
        "model": "expression-1",
        "aspect_ratio": "16:9",
        "framing": "portrait",
    }
    for field, (name, content) in files.items():
        data[field] = SimpleUploadedFile(name, content, content_type="application/octet-stream")
    return data


# --- The new-agent form -------------------------------------------------------------------------


@CASES
def test_the_form_refuses_a_hostile_file_and_stores_nothing(
    org, member, media_root, field, name, content, words
):
    response = client_for(member).post(
        reverse("agent_new", args=[org.slug]), _form(**{field: (name, content)})
    )
    assert response.status_code == 400
    errors = " ".join(response.context["form"].errors.get(field, []))
    assert words in errors, errors
    assert "Pre-flight checks" in response.content.decode()
    assert_nothing_stored(media_root)


def test_a_good_upload_is_stored_under_the_agent(org, member, media_root):
    """The control case: the same request with good files stores exactly those two files."""
    response = client_for(member).post(
        reverse("agent_new", args=[org.slug]),
        _form(image=("face.png", png_bytes()), audio=("voice.wav", wav_bytes(5))),
    )
    assert response.status_code == 302
    agent = Agent.objects.get()
    folder = media_root / "orgs" / str(org.pk) / "agents" / str(agent.public_id)
    assert stored_files(media_root) == [folder / "audio/voice.wav", folder / "image/face.png"]


def png_polyglot() -> bytes:
    """A valid PNG that is also an HTML page (markup in a text chunk): harmless as an image,
    a stored script if it were ever served as text/html."""
    page = b"<html><script>alert(document.domain)</script></html>"
    png = png_bytes()
    return png[:33] + _chunk(b"tEXt", b"Comment\x00" + page) + png[33:]


@pytest.mark.parametrize(
    "filename",
    [
        "../../../../outside.png",
        "..\\..\\..\\outside.png",
        "/etc/cron.d/outside.png",
        '"><img src=x onerror=alert(1)>.png',
        "face.png\x00.html",
        "face.html",
        "face.svg",
        ".htaccess",
    ],
)
def test_stored_files_keep_inside_the_media_folder_named_by_their_content(
    org, member, media_root, filename
):
    # Built by hand: Django's test client would drop the directories before sending.
    body = encode_multipart(BOUNDARY, _form()).removesuffix(f"--{BOUNDARY}--\r\n".encode())
    body += (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: text/html\r\n\r\n"
    ).encode() + png_polyglot()
    body += f"\r\n--{BOUNDARY}--\r\n".encode()
    response = client_for(member).generic(
        "POST", reverse("agent_new", args=[org.slug]), body, content_type=MULTIPART_CONTENT
    )
    assert response.status_code == 302
    agent = Agent.objects.get()
    [stored] = stored_files(media_root)
    assert stored.resolve().is_relative_to(media_root.resolve())
    # Whatever the customer called it, a PNG is stored (and so served) as a .png file.
    assert stored.relative_to(media_root).as_posix() == (
        f"orgs/{org.pk}/agents/{agent.public_id}/image/face.png"
    )


# --- The REST API -------------------------------------------------------------------------------


@pytest.fixture
def api(org, settings) -> ApiClient:
    settings.API_RATE_LIMIT_PER_MINUTE = 10_000
    return ApiClient(make_key(org))


@CASES
def test_the_api_refuses_a_hostile_file_and_stores_nothing(
    api, media_root, field, name, content, words
):
    encoded = base64.b64encode(content).decode()
    body = {"name": "Ava", "prompt": "A calm guide", f"{field}_base64": encoded}
    for headers in ({}, {"Idempotency-Key": f"upload-{uuid.uuid4()}"}):
        response = api.post("/agents", body, headers)
        assert response.status_code == 422, response.content[:300]
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        messages = " ".join(error["details"]["fields"][f"{field}_base64"])
        assert words in messages, messages
    assert_nothing_stored(media_root)


def test_the_api_stores_a_good_upload(api, media_root):
    body = {
        "name": "Ava",
        "prompt": "A calm guide",
        "image_base64": base64.b64encode(png_bytes()).decode(),
        "audio_base64": base64.b64encode(wav_bytes(5)).decode(),
    }
    response = api.post("/agents", body)
    assert response.status_code == 202, response.content[:300]
    # Named by what the bytes are, never by anything the client sent.
    assert sorted(path.name for path in stored_files(media_root)) == ["face.png", "voice.wav"]


def test_a_body_over_the_upload_limit_is_a_413_in_the_envelope(api, media_root, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    body = {"name": "Ava", "image_base64": base64.b64encode(png_bytes()).decode()}
    assert len(json.dumps(body)) > 1_000  # the body is over the limit
    response = api.post("/agents", body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert_nothing_stored(media_root)
