"""The face image and voice sample go to bitHuman's `POST /v1/files/upload` (api/files.md) and
generate gets the returned `file_url`, instead of the file inline as base64.

The upload is free and bitHuman refuses there what it would otherwise fail (and refund) seconds
after billing: a file over its category's limit (413), a type it does not take (415), a link it
cannot download (400 DOWNLOAD_FAILED). So the form and the API upload before the agent exists,
and such a refusal is an error on the field that holds the file or link: nothing is generated,
nothing is saved, and the form keeps what was typed.

When bitHuman cannot be reached (network, 5xx, 429) the agent is still created: the submission
task uploads first (`agent_media_urls`), as the outbox sends everything else later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.core.files.uploadedfile import UploadedFile
from django.db.models.fields.files import FieldFile

from agents.models import Agent
from agents.preflight import AUDIO, IMAGE, MediaKind, MediaSource, stored_name
from organizations import connections
from portal.bithuman import errors as bh_errors
from portal.bithuman.client import BithumanClient
from portal.errors import ApplicationError
from portal.models import Organization
from portal.tenancy import organization_active_require

logger = logging.getLogger(__name__)

_FILE_TYPES = {"image": "image", "audio": "audio"}


@dataclass(frozen=True)
class UploadedMedia:
    """bitHuman's URLs of the face and voice ("" for one not given or not uploaded yet)."""

    image_file_url: str = ""
    audio_file_url: str = ""


def _read(upload: UploadedFile | FieldFile) -> bytes:
    upload.open("rb")
    try:
        upload.seek(0)
        return upload.read()
    finally:
        if isinstance(upload, UploadedFile):
            upload.seek(0)  # the form saves the same upload afterwards
        else:
            upload.close()


def _upload_name(kind: MediaKind, upload: UploadedFile | FieldFile) -> str:
    """The name bitHuman sorts the file by: its extension, from its content (never the name
    the customer gave it); a stored file already carries one."""
    if isinstance(upload, UploadedFile):
        return stored_name(kind=kind, upload=upload)
    return (upload.name or "").rsplit("/", 1)[-1] or f"{kind.field}.bin"


def media_upload(
    *, client: BithumanClient, kind: MediaKind, upload: UploadedFile | FieldFile | None, url: str
) -> str:
    """Send one medium (its bytes, else its link) to bitHuman; its `file_url`, or "" when there
    is nothing to send. Raises bitHuman's errors (a refusal is a `ValidationError`)."""
    file_type = _FILE_TYPES[kind.field]
    if upload:
        data = _read(upload)
        uploaded = client.file_upload(
            file_data=data,
            file_name=_upload_name(kind, upload),
            file_type=file_type,  # type: ignore[arg-type]
        )
        return uploaded.file_url
    if url.strip():
        return client.file_upload(file_url=url.strip(), file_type=file_type).file_url  # type: ignore[arg-type]
    return ""


def refusal_message(kind: MediaKind, error: bh_errors.BithumanError, *, link: bool) -> str:
    """What bitHuman's refusal of an upload means, in the customer's words, with the fix."""
    noun = kind.noun
    if error.code == "FILE_TOO_LARGE" or error.http_status == 413:
        text = f"bitHuman refused the {noun}: it is over bitHuman's size limit. {kind.size_fix}"
    elif error.code == "UNSUPPORTED_TYPE" or error.http_status == 415:
        text = (
            f"bitHuman does not accept this type of {noun}. Export it as {kind.type_names} "
            "and try again."
        )
    elif error.code == "DOWNLOAD_FAILED":
        text = (
            f"bitHuman could not download the {noun} from that link. Use a public link that "
            "opens the file itself, or upload the file instead."
        )
    else:
        where = "link" if link else "file"
        text = f"bitHuman refused the {noun} {where}: {error.message}"
    return text  # error_show adds bitHuman's request id (`upstream_request_id`)


def media_uploads_run(
    *,
    org: Organization,
    image: MediaSource,
    audio: MediaSource,
    field_for: Callable[[MediaKind, MediaSource], str],
) -> UploadedMedia:
    """Upload the given media before the agent exists. A refusal raises an ApplicationError on
    `field_for(kind, source)` (code: bitHuman's, lower case); bitHuman out of reach leaves that
    URL empty for the submission task to upload."""
    organization_active_require(org)  # a suspended organization sends bitHuman nothing
    urls = {"image": "", "audio": ""}
    sources = [(IMAGE, image), (AUDIO, audio)]
    if not any(source.is_given for _kind, source in sources):
        return UploadedMedia()
    connection = connections.connection_get(org=org)
    with connections.client_for(connection=connection) as client:
        for kind, source in sources:
            if not source.is_given:
                continue
            try:
                urls[kind.field] = media_upload(
                    client=client, kind=kind, upload=source.upload, url=source.url
                )
            except bh_errors.ValidationError as error:
                raise ApplicationError(
                    refusal_message(kind, error, link=source.upload is None),
                    field=field_for(kind, source),
                    code=error.code.lower(),
                    extra={"upstream_request_id": error.request_id or ""},
                ) from None
            except bh_errors.BithumanError as error:
                # Not the file's fault (network, outage, rate limit, the account): the
                # submission uploads it, and fails the agent with bitHuman's reason if need be.
                logger.info("upload of the %s deferred to the submission: %s", kind.field, error)
    return UploadedMedia(image_file_url=urls["image"], audio_file_url=urls["audio"])


def agent_media_urls(*, client: BithumanClient, agent: Agent) -> tuple[str | None, str | None]:
    """The `image` and `audio` of the agent's generate request: bitHuman's URLs, uploading now
    whatever was not uploaded yet (and remembering it). Raises bitHuman's errors."""
    found: dict[str, str | None] = {}
    for kind, field_file, url, attribute in (
        (IMAGE, agent.image, agent.image_url, "image_file_url"),
        (AUDIO, agent.audio, agent.audio_url, "audio_file_url"),
    ):
        stored = getattr(agent, attribute)
        if not stored:
            stored = media_upload(client=client, kind=kind, upload=field_file or None, url=url)
            if stored:
                Agent.objects.filter(pk=agent.pk).update(**{attribute: stored})
                setattr(agent, attribute, stored)
        found[kind.field] = stored or None
    return found["image"], found["audio"]
