"""Pre-flight checks on an agent generation's inputs, run before any credit is spent.

bitHuman accepts a generation at once and only fails it seconds later when the media is unusable
(see NOTES.md, "Agent generation"), so the portal checks the prompt, the face image and the voice
sample first and shows the result as a checklist of pass / warning / fail lines.

Every check returns a `Check`; nothing here raises. Media is judged by its content (magic bytes,
then Pillow or mutagen), never by the file name or the Content-Type a server claims.

A link is downloaded by `portal.netsafe.UrlFetcher`, which only talks https to public addresses,
so that a customer cannot make the portal fetch from our own network (SSRF).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import IO, Literal

from django.core.files.uploadedfile import UploadedFile
from mutagen import File as mutagen_file
from mutagen import FileType
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.oggflac import OggFLAC
from mutagen.oggopus import OggOpus
from mutagen.oggspeex import OggSpeex
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE
from PIL import Image

from portal.netsafe import UrlFetcher, UrlRejected, UrlTooLarge

logger = logging.getLogger(__name__)

Outcome = Literal["pass", "warning", "fail"]

# Sizes are decimal megabytes: the stricter reading of bitHuman's "under 10 MB", so nothing we
# pass is refused for size later.
MEGABYTE = 1_000_000
IMAGE_MAX_BYTES = 10 * MEGABYTE
AUDIO_MAX_BYTES = 50 * MEGABYTE

# A face needs enough pixels to animate: under 128 px on the short side there is no usable face,
# under 512 px it works but looks soft. Beyond 8192 px on the long side is a scan or a poster,
# not a portrait, and costs memory for nothing.
IMAGE_MIN_SIDE = 128
IMAGE_RECOMMENDED_MIN_SIDE = 512
IMAGE_MAX_SIDE = 8192

# bitHuman wants a voice sample under one minute and recommends 3-10 s of clean speech.
AUDIO_MAX_SECONDS = 60.0
AUDIO_RECOMMENDED_SECONDS = (3.0, 10.0)

_SNIFF_BYTES = 16
_URL_FIX = "Use a public https link that opens the file itself, or upload the file instead."


# --- Results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    key: str
    field: str  # form field name: "prompt", "image", "audio"
    label: str  # e.g. "Face image type"
    outcome: Outcome
    message: str  # plain words a customer understands, with the fix


@dataclass(frozen=True)
class MediaSource:
    """One medium as the customer gave it: an uploaded file, a link, or neither."""

    upload: UploadedFile | None = None
    url: str = ""

    @property
    def is_given(self) -> bool:
        return self.upload is not None or bool(self.url.strip())


@dataclass(frozen=True)
class PreflightReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.outcome == "fail"]

    @property
    def warnings(self) -> list[Check]:
        return [check for check in self.checks if check.outcome == "warning"]

    def for_field(self, name: str) -> list[Check]:
        return [check for check in self.checks if check.field == name]


# --- Entry point ------------------------------------------------------------------------------


def preflight_run(
    *,
    prompt: str,
    image: MediaSource | None,
    audio: MediaSource | None,
    fetcher: UrlFetcher | None = None,
) -> PreflightReport:
    fetcher = fetcher or UrlFetcher()
    has_image = image is not None and image.is_given
    checks = [
        prompt_check(prompt=prompt, has_image=has_image),
        *media_checks(kind=IMAGE, source=image, fetcher=fetcher),
        *media_checks(kind=AUDIO, source=audio, fetcher=fetcher),
    ]
    return PreflightReport(checks=tuple(checks))


def prompt_check(*, prompt: str, has_image: bool) -> Check:
    def check(outcome: Outcome, message: str) -> Check:
        return Check(key="prompt", field="prompt", label="Prompt", outcome=outcome, message=message)

    if prompt.strip():
        return check("pass", "A prompt is given.")
    if has_image:
        return check("pass", "No prompt needed: the face image is used.")
    return check("fail", "Describe the agent in a prompt, or add a face image.")


# --- Media ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaKind:
    """What differs between the face image and the voice sample."""

    field: str
    noun: str  # in sentences: "The {noun} is 12.4 MB"
    label: str  # checklist prefix: "{label} type"
    max_bytes: int
    type_names: str
    size_fix: str
    sniff: Callable[[bytes], str | None]
    detail_check: Callable[[MediaKind, IO[bytes], str], Check]

    def check(self, aspect: str, outcome: Outcome, message: str) -> Check:
        return Check(
            key=f"{self.field}_{aspect}",
            field=self.field,
            label=f"{self.label} {aspect}",
            outcome=outcome,
            message=message,
        )


def media_checks(
    *, kind: MediaKind, source: MediaSource | None, fetcher: UrlFetcher
) -> list[Check]:
    if source is None or not source.is_given:
        return []  # both media are optional; the prompt rule covers a missing image
    try:
        if source.upload is not None and source.url.strip():
            return [
                kind.check(
                    "source", "fail", f"Give the {kind.noun} as a file or as a link, not both."
                )
            ]
        if source.upload is not None:
            return _upload_checks(kind=kind, upload=source.upload)
        return _url_checks(kind=kind, url=source.url.strip(), fetcher=fetcher)
    except Exception:
        # Last resort so that one surprising file never turns the form into a server error.
        logger.exception("preflight of the %s failed unexpectedly", kind.field)
        return [
            kind.check(
                "source",
                "fail",
                f"We could not check this {kind.noun}. Try again, or use another file.",
            )
        ]


def _upload_checks(*, kind: MediaKind, upload: UploadedFile) -> list[Check]:
    try:
        upload.seek(0, io.SEEK_END)
        size = upload.tell()
        upload.seek(0)
        return _content_checks(kind=kind, stream=upload, size=size)
    except (OSError, ValueError):
        return [
            kind.check(
                "source", "fail", f"The uploaded {kind.noun} could not be read. Upload it again."
            )
        ]
    finally:
        # The form saves or re-sends the same upload afterwards.
        with suppress(OSError, ValueError):
            upload.seek(0)


def _url_checks(*, kind: MediaKind, url: str, fetcher: UrlFetcher) -> list[Check]:
    try:
        body = fetcher.fetch(url=url, max_bytes=kind.max_bytes)
    except UrlTooLarge as exc:
        return [_size_fail(kind=kind, size=exc.size, where=" at that link")]
    except UrlRejected as exc:
        return [kind.check("source", "fail", f"The {kind.noun} URL {exc.reason}. {_URL_FIX}")]
    downloaded = kind.check("source", "pass", f"The {kind.noun} was downloaded from the link.")
    return [downloaded, *_content_checks(kind=kind, stream=io.BytesIO(body), size=len(body))]


def _content_checks(*, kind: MediaKind, stream: IO[bytes], size: int) -> list[Check]:
    if size == 0:
        return [kind.check("type", "fail", f"The {kind.noun} file is empty.")]
    head = stream.read(_SNIFF_BYTES)
    stream.seek(0)
    detected = kind.sniff(head)
    if detected is None:
        type_check = kind.check(
            "type",
            "fail",
            f"This file is not a {kind.type_names} file (we look at its content, not its "
            f"name). Export it as {kind.type_names} and try again.",
        )
    else:
        type_check = kind.check("type", "pass", f"{_format_name(detected)} file.")
    if size > kind.max_bytes:
        size_check = _size_fail(kind=kind, size=size)
    else:
        size_check = kind.check(
            "size", "pass", f"{_megabytes(size)}, within the {_megabytes(kind.max_bytes)} limit."
        )
    checks = [type_check, size_check]
    # Dimensions and duration only mean something once the file is the right kind and size.
    if detected is not None and size <= kind.max_bytes:
        checks.append(kind.detail_check(kind, stream, detected))
        stream.seek(0)
    return checks


def _size_fail(*, kind: MediaKind, size: int | None, where: str = "") -> Check:
    limit = _megabytes(kind.max_bytes)
    if size is None:
        message = f"The {kind.noun}{where} is larger than the {limit} limit."
    else:
        message = (
            f"The {kind.noun}{where} is {_megabytes(size, round_up=True)}; the limit is {limit}."
        )
    return kind.check("size", "fail", f"{message} {kind.size_fix}")


def _megabytes(size: int, *, round_up: bool = False) -> str:
    if size < MEGABYTE // 10 and not round_up:
        return f"{max(1, round(size / 1000))} KB"
    # Rounding up keeps "10.04 MB" from reading as "10.0 MB; the limit is 10 MB".
    tenths = math.ceil(size * 10 / MEGABYTE) if round_up else round(size * 10 / MEGABYTE)
    return f"{tenths / 10:g} MB"


def _format_name(detected: str) -> str:
    return {"WEBP": "WebP"}.get(detected, detected)


# --- Face image -------------------------------------------------------------------------------


def image_sniff(head: bytes) -> str | None:
    """The Pillow format name of a JPEG, PNG or WebP file, judged by its first bytes."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _image_dimensions_check(kind: MediaKind, stream: IO[bytes], detected: str) -> Check:
    try:
        # open() reads the header only; restricting formats to the sniffed one keeps every other
        # Pillow parser away from customer files. Pillow itself refuses more than
        # 2 * Image.MAX_IMAGE_PIXELS (a decompression bomb), which we report as a fail.
        with Image.open(stream, formats=[detected]) as picture:
            width, height = picture.size
            if max(width, height) <= IMAGE_MAX_SIDE:
                _image_read_through(picture, detected)
    except Image.DecompressionBombError:
        return kind.check(
            "dimensions",
            "fail",
            "The image has far too many pixels to process safely. Resize it to at most "
            f"{IMAGE_MAX_SIDE} pixels on the long side.",
        )
    except Exception:  # Pillow raises many types on damaged input (OSError, SyntaxError, ...)
        return kind.check(
            "dimensions",
            "fail",
            f"The image looks like a {_format_name(detected)} file but could not be read; it "
            "may be damaged or incomplete. Export it again.",
        )
    short_side, long_side = sorted((width, height))
    size = f"{width} x {height} pixels"
    if long_side > IMAGE_MAX_SIDE:
        return kind.check(
            "dimensions",
            "fail",
            f"The image is {size}; the long side can be at most {IMAGE_MAX_SIDE} pixels. "
            "Resize it and try again.",
        )
    if short_side < IMAGE_MIN_SIDE:
        return kind.check(
            "dimensions",
            "fail",
            f"The image is {size}; it needs at least {IMAGE_MIN_SIDE} pixels on the short "
            "side. Use a larger photo of the face.",
        )
    if short_side < IMAGE_RECOMMENDED_MIN_SIDE:
        return kind.check(
            "dimensions",
            "warning",
            f"The image is {size}. It will work, but a photo with at least "
            f"{IMAGE_RECOMMENDED_MIN_SIDE} pixels on the short side gives a sharper avatar.",
        )
    return kind.check("dimensions", "pass", f"{size}.")


def _image_read_through(picture: Image.Image, detected: str) -> None:
    """Raise if the file ends early (an interrupted upload or export): its header alone looks
    fine. PNG: every chunk's checksum, without decoding; JPEG: a decode at 1/8 scale, which
    reads every byte in little memory; WebP: Pillow's reader already needs the whole file."""
    if detected == "PNG":
        picture.verify()
    elif detected == "JPEG":
        picture.draft("RGB", (max(1, picture.width // 8), max(1, picture.height // 8)))
        picture.load()


IMAGE = MediaKind(
    field="image",
    noun="image",
    label="Face image",
    max_bytes=IMAGE_MAX_BYTES,
    type_names="JPEG, PNG or WebP",
    size_fix="Resize or compress it and try again.",
    sniff=image_sniff,
    detail_check=_image_dimensions_check,
)


# --- Voice sample -----------------------------------------------------------------------------

_M4A_BRANDS = frozenset({b"M4A ", b"mp42", b"isom"})


def audio_sniff(head: bytes) -> str | None:
    """WAV, MP3, M4A or OGG, judged by the file's first bytes."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV"
    if head.startswith(b"ID3") or _is_mpeg_frame_sync(head):
        return "MP3"
    if head[4:8] == b"ftyp" and head[8:12] in _M4A_BRANDS:
        return "M4A"
    if head.startswith(b"OggS"):
        return "OGG"
    return None


def _is_mpeg_frame_sync(head: bytes) -> bool:
    # 11 set bits start an MPEG audio frame. Layer bits 00 mean AAC in ADTS, which is not MP3.
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0


def _audio_seconds(stream: IO[bytes], detected: str) -> float:
    audio: FileType | None
    if detected == "OGG":
        # Ogg is a container; the codec inside decides which reader understands it.
        audio = mutagen_file(stream, options=[OggVorbis, OggOpus, OggFLAC, OggSpeex])
    else:
        audio = {"WAV": WAVE, "MP3": MP3, "M4A": MP4}[detected](stream)
    if audio is None or audio.info is None:
        raise ValueError(f"no {detected} stream recognised")
    if detected == "WAV" and _wav_is_cut_short(stream):
        raise ValueError("the WAV data ends before the length its header gives")
    seconds = float(audio.info.length)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"unusable length {seconds!r}")
    return seconds


def _wav_is_cut_short(stream: IO[bytes]) -> bool:
    """Whether the `data` chunk claims more bytes than the file has (mutagen takes the length
    from the header, so a truncated file would otherwise pass with its full length)."""
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    stream.seek(12)  # past "RIFF", its size and "WAVE"
    while True:
        header = stream.read(8)
        if len(header) < 8:
            return True  # no data chunk: nothing to play
        chunk_size = int.from_bytes(header[4:], "little")
        if header[:4] == b"data":
            # 0xFFFFFFFF means "unknown" (streamed recordings); the length check judges those.
            return chunk_size != 0xFFFF_FFFF and stream.tell() + chunk_size > size
        stream.seek(chunk_size + (chunk_size & 1), io.SEEK_CUR)


def _audio_duration_check(kind: MediaKind, stream: IO[bytes], detected: str) -> Check:
    try:
        seconds = _audio_seconds(stream, detected)
    except Exception:  # mutagen raises its own error types, struct errors, ... on damaged input
        return kind.check(
            "length",
            "fail",
            f"The voice sample looks like a {detected} file but its length could not be read; "
            "it may be damaged or incomplete. Export it again as WAV or MP3.",
        )
    low, high = AUDIO_RECOMMENDED_SECONDS
    length = f"{seconds:.1f} seconds"
    if seconds >= AUDIO_MAX_SECONDS:
        return kind.check(
            "length",
            "fail",
            f"The voice sample is {length} long; it must be under {AUDIO_MAX_SECONDS:g} seconds. "
            f"Trim it to {low:g}-{high:g} seconds of clear speech.",
        )
    if not low <= seconds <= high:
        return kind.check(
            "length",
            "warning",
            f"The voice sample is {length} long. It will work, but {low:g}-{high:g} seconds of "
            "clear speech gives the most faithful voice.",
        )
    return kind.check("length", "pass", f"{length}.")


AUDIO = MediaKind(
    field="audio",
    noun="voice sample",
    label="Voice sample",
    max_bytes=AUDIO_MAX_BYTES,
    type_names="WAV, MP3, M4A or OGG",
    size_fix="Trim or compress it and try again.",
    sniff=audio_sniff,
    detail_check=_audio_duration_check,
)


# --- Stored names -----------------------------------------------------------------------------

_EXTENSIONS = {
    "JPEG": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "WAV": "wav",
    "MP3": "mp3",
    "M4A": "m4a",
    "OGG": "ogg",
}


def stored_name(*, kind: MediaKind, upload: UploadedFile) -> str:
    """The name to store an upload that passed its checks under: the extension of what its
    content is, never the customer's, so that no file is ever served as, say, HTML."""
    upload.seek(0)
    head = upload.read(_SNIFF_BYTES)
    upload.seek(0)
    detected = kind.sniff(head)
    stem = "face" if kind is IMAGE else "voice"
    return f"{stem}.{_EXTENSIONS[detected]}" if detected else f"{stem}.bin"
