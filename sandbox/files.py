"""POST /v1/files/upload (api/files.md): files by base64 data or by URL, sorted by type, with
the documented per-category size limits, and served back at a public URL that generate accepts.

A URL upload is simulated (the sandbox reaches no other server): a link to one of the sandbox's
own files is copied, a host under `.invalid` or a link containing `fail-download` answers
`400 DOWNLOAD_FAILED`, and any other link is accepted as bitHuman would after downloading it.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from sandbox.errors import SandboxError, invalid, missing_param
from sandbox.fields import field_choice, field_str
from sandbox.models import SandboxAccount, SandboxFile
from sandbox.schemas import is_url

MEGABYTE = 1024 * 1024
FILE_TYPES = ("auto", "image", "video", "audio", "document")

# Category, storage folder, extensions and limit, as api/files.md's two tables give them.
_CATEGORIES: dict[str, tuple[str, frozenset[str], int]] = {
    "image": (
        "image",
        frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".svg"}),
        10 * MEGABYTE,
    ),
    "video": (
        "video",
        frozenset({".mp4", ".avi", ".mov", ".wmv", ".flv", ".webm", ".mkv"}),
        100 * MEGABYTE,
    ),
    "audio": (
        "audio",
        frozenset({".mp3", ".wav", ".flac", ".aac", ".ogg", ".m4a"}),
        50 * MEGABYTE,
    ),
    "document": (
        "docs",
        frozenset({".pdf", ".doc", ".docx", ".txt", ".ppt", ".pptx", ".xls", ".xlsx", ".csv"}),
        10 * MEGABYTE,
    ),
}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_SUPPORTED = "Supported: JPEG, PNG, WebP, MP4, WAV, MP3, OGG."


@dataclass(frozen=True)
class UploadIn:
    file_type: str
    file_url: str | None
    file_data: bytes | None
    file_name: str | None


def upload_in(body: dict[str, Any]) -> UploadIn:
    file_type = field_choice(body, "file_type", choices=FILE_TYPES, default="auto") or "auto"
    file_url = field_str(body, "file_url")
    data = field_str(body, "file_data")
    if file_url is not None and data is not None:
        raise invalid("Give file_url or file_data, not both")
    if file_url is not None:
        if not is_url(file_url):
            raise invalid("Field 'file_url' must be a public http(s) URL")
        return UploadIn(
            file_type=file_type, file_url=file_url.strip(), file_data=None, file_name=None
        )
    if data is None:
        raise missing_param("file_url or file_data")
    name = field_str(body, "file_name", required=True) or ""
    raw = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        decoded = base64.b64decode("".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Field 'file_data' must be base64 data") from None
    return UploadIn(file_type=file_type, file_url=None, file_data=decoded, file_name=name)


def _extension(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def _category(*, name: str, file_type: str) -> str:
    """The category of a file by its extension; 415 when it has none or it is unsupported (or
    not of the `file_type` asked for)."""
    extension = _extension(name)
    for category, (_folder, extensions, _limit) in _CATEGORIES.items():
        if extension in extensions and file_type in ("auto", category):
            return category
    raise SandboxError(
        415, "UNSUPPORTED_TYPE", f"File type not supported: '{extension or name}'. {_SUPPORTED}"
    )


def _own_file(url: str) -> SandboxFile | None:
    """One of the sandbox's uploaded files, named by its public URL."""
    match = re.search(r"/assets/([0-9a-f-]{36})/", urlsplit(url).path)
    if match is None:
        return None
    try:
        return SandboxFile.objects.filter(pk=uuid.UUID(match.group(1))).first()
    except ValueError:
        return None


def file_upload(*, request: HttpRequest, account: SandboxAccount, data: UploadIn) -> dict:
    """Store one file and return the `data` of the answer."""
    if data.file_url is not None:
        url = data.file_url
        host = (urlsplit(url).hostname or "").lower()
        if host.endswith(".invalid") or "fail-download" in url.lower():
            raise SandboxError(
                400,
                "DOWNLOAD_FAILED",
                f"Could not download {url}: ensure it is publicly accessible (HTTP 404).",
            )
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "file"
        source = url
        copied = _own_file(url)
        content = bytes(copied.data) if copied is not None else b""
    else:
        name = data.file_name or "file"
        source = name
        content = data.file_data or b""
    category = _category(name=name, file_type=data.file_type)
    folder, _extensions, limit = _CATEGORIES[category]
    if len(content) > limit:
        raise SandboxError(
            413,
            "FILE_TOO_LARGE",
            f"File exceeds the {limit // MEGABYTE} MB limit for {category} files "
            f"({len(content)} bytes).",
        )
    now = timezone.now()
    safe = _SAFE_NAME.sub("_", name)[-120:] or "file"
    stored = SandboxFile.objects.create(
        account=account,
        name=f"{now:%Y%m%d_%H%M%S}_{safe}",
        original_source=source,
        file_type=data.file_type,
        asset_category=folder,
        mime_type=mimetypes.guess_type(safe)[0] or "application/octet-stream",
        size=len(content),
        data=content,
        created_at=now,
    )
    path = reverse("sandbox:file_asset", args=[stored.pk, stored.name])
    return {
        "file_url": request.build_absolute_uri(path),
        "original_source": source,
        "file_type": data.file_type,
        "file_size": stored.size,
        "mime_type": stored.mime_type,
        "asset_category": folder,
        "uploaded_at": now.isoformat().replace("+00:00", "Z"),
    }


def file_get(*, file_id: uuid.UUID, name: str) -> SandboxFile | None:
    return SandboxFile.objects.filter(pk=file_id, name=name).first()
