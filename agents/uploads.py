"""Files kept across a failed new-agent form: the customer chose a 50 MB voice sample, mistyped
the name, and should not have to choose (and send) the file again.

A kept file is a `PendingUpload` of one organization *and* one user (nobody else can name it),
read back by its opaque id from the re-rendered form, deleted when the agent is created, and
purged when it expires (PENDING_UPLOAD_TTL, beat's `pending_uploads_purge`)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone

from agents.models import PendingUpload
from portal.models import Organization, User

PENDING_UPLOAD_TTL = timedelta(hours=1)
KINDS = ("image", "audio")


def pending_upload_keep(
    *, org: Organization, user: User, kind: str, upload: UploadedFile, stored_name: str
) -> PendingUpload:
    """Hold `upload` (stored under `stored_name`, the content's own extension) for its user."""
    upload.seek(0)
    pending = PendingUpload(
        organization=org,
        user=user,
        kind=kind,
        original_name=(upload.name or kind)[-255:],
        size=upload.size or 0,
        expires_at=timezone.now() + PENDING_UPLOAD_TTL,
    )
    pending.file.save(stored_name, upload, save=False)
    pending.save()
    upload.seek(0)
    return pending


def pending_upload_get(
    *, org: Organization, user: User, kind: str, public_id: str | None
) -> PendingUpload | None:
    """The user's own unexpired kept file of this kind, or None (a foreign, unknown, expired
    or malformed id alike)."""
    try:
        key = uuid.UUID(str(public_id or ""))
    except ValueError:
        return None
    return (
        PendingUpload.objects.for_org(org)
        .filter(public_id=key, user=user, kind=kind, expires_at__gt=timezone.now())
        .first()
    )


def pending_upload_file(pending: PendingUpload) -> UploadedFile:
    """The kept file as an upload, named as the customer named it."""
    return UploadedFile(
        file=pending.file.open("rb"), name=pending.original_name, size=pending.file.size
    )


def pending_uploads_discard(uploads: list[PendingUpload]) -> None:
    for pending in uploads:
        pending.file.close()
        pending.file.delete(save=False)
        pending.delete()


def pending_uploads_purge(*, now: datetime | None = None, batch: int = 500) -> int:
    expired = list(PendingUpload.objects.filter(expires_at__lte=now or timezone.now())[:batch])
    pending_uploads_discard(expired)
    return len(expired)
