"""Pre-flight checks: media judged by content, limits, safe link fetching and the prompt rule.

All media is generated here (Pillow images, `wave` audio, hand-built MP3 frames), so no binary
fixtures live in the repository.
"""

import io
import socket
import ssl
import struct
import wave
import zlib
from collections.abc import Callable, Iterator

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from PIL import Image

from agents import preflight
from agents.preflight import Check, MediaSource, PreflightReport
from portal import netsafe
from portal.netsafe import UrlFetcher, UrlRejected

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:1b2"

# Every address class the fetcher must refuse, including IPv6 spellings of IPv4 ones (the rules
# themselves: tests/portal/test_netsafe.py).
NON_PUBLIC_ADDRESSES = [
    "127.0.0.1",  # loopback
    "127.8.9.10",
    "10.0.0.1",  # RFC 1918
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata (link-local)
    "169.254.10.20",  # link-local
    "100.64.0.1",  # CGNAT
    "100.100.100.200",  # CGNAT, Alibaba's metadata service
    "0.0.0.0",  # noqa: S104 - unspecified
    "224.0.1.1",  # multicast (is_global alone lets this through)
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "198.18.0.1",  # benchmarking
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:100.64.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "::7f00:1",  # IPv4-compatible 127.0.0.1
]
PUBLIC_ADDRESSES = [PUBLIC_V4, "8.8.8.8", PUBLIC_V6, "::ffff:8.8.8.8", "64:ff9b::808:808"]


# --- Media made on the fly --------------------------------------------------------------------


def image_bytes(image_format: str = "PNG", size: tuple[int, int] = (600, 800)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 150, 120)).save(buffer, format=image_format)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that only declares its size: enough for Pillow to open, with almost no pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


def wav_bytes(seconds: float) -> bytes:
    # 8 kHz mono 8-bit keeps even a 61 s sample under 0.5 MB.
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as sample:
        sample.setnchannels(1)
        sample.setsampwidth(1)
        sample.setframerate(8000)
        sample.writeframes(b"\x80" * int(8000 * seconds))
    return buffer.getvalue()


def mp3_bytes(seconds: float) -> bytes:
    # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz: 417-byte frames of 1152 samples each (silent).
    frame = b"\xff\xfb\x90\x64" + b"\x00" * 413
    return frame * round(seconds * 44100 / 1152)


def upload(name: str, content: bytes, content_type: str = "") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=content_type)


def run_image(source: MediaSource, **kwargs) -> PreflightReport:
    return preflight.preflight_run(prompt="", image=source, audio=None, **kwargs)


def run_audio(source: MediaSource, **kwargs) -> PreflightReport:
    return preflight.preflight_run(prompt="A friendly chef", image=None, audio=source, **kwargs)


def by_key(report: PreflightReport) -> dict[str, Check]:
    return {check.key: check for check in report.checks}


@pytest.fixture
def sparse_upload(tmp_path) -> Iterator[Callable[[str, bytes, int], UploadedFile]]:
    """An upload of `size` bytes that starts with `head`; the rest is a hole, not real data."""
    opened = []

    def make(name: str, head: bytes, size: int) -> UploadedFile:
        path = tmp_path / name
        with open(path, "wb") as handle:
            handle.write(head)
            handle.truncate(size)
        opened.append(open(path, "rb"))  # noqa: SIM115 - closed at teardown
        return UploadedFile(file=opened[-1], name=name, size=size)

    yield make
    for handle in opened:
        handle.close()


# --- Simulated web ----------------------------------------------------------------------------


class FakeWeb:
    """Public https servers in memory: our machines cannot reach any real one, so the fetcher
    gets an httpx.MockTransport and a resolver that answers public addresses."""

    def __init__(self) -> None:
        self.addresses: dict[str, list[str]] = {
            "example.com": [PUBLIC_V4],
            "cdn.example.net": [PUBLIC_V6],
        }
        self.routes: dict[str, Callable[[httpx.Request], httpx.Response]] = {}
        self.requests: list[httpx.Request] = []
        self.lookups: list[str] = []

    def serve(self, url: str, status: int = 200, body: bytes = b"", **headers: str) -> None:
        self.routes[url] = lambda request: httpx.Response(status, content=body, headers=headers)

    def redirect(self, url: str, location: str, status: int = 302) -> None:
        self.serve(url, status, Location=location)

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.addresses[host]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        # The fetcher connects to the vetted IP; the name travels in the Host header.
        url = f"https://{request.headers['host']}{request.url.raw_path.decode()}"
        route = self.routes.get(url)
        return route(request) if route else httpx.Response(404)

    def fetcher(self, **kwargs) -> UrlFetcher:
        return UrlFetcher(
            resolver=self.resolve, transport=httpx.MockTransport(self.handle), **kwargs
        )


@pytest.fixture
def web() -> FakeWeb:
    return FakeWeb()


def rejection(fetcher: UrlFetcher, url: str, max_bytes: int = 1_000_000) -> UrlRejected:
    with pytest.raises(UrlRejected) as caught:
        fetcher.fetch(url=url, max_bytes=max_bytes)
    return caught.value


# --- Report -----------------------------------------------------------------------------------


def test_report_groups_checks_by_outcome_and_field():
    passed = Check(key="prompt", field="prompt", label="Prompt", outcome="pass", message="ok")
    warned = Check(key="image_dimensions", field="image", label="x", outcome="warning", message="")
    failed = Check(key="audio_length", field="audio", label="x", outcome="fail", message="")

    report = PreflightReport(checks=(passed, warned, failed))

    assert not report.ok
    assert report.failures == [failed]
    assert report.warnings == [warned]
    assert report.for_field("image") == [warned]
    assert report.for_field("video") == []
    assert PreflightReport(checks=(passed, warned)).ok


# --- Prompt -----------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "   \n\t"])
def test_prompt_is_required_without_an_image(prompt):
    report = preflight.preflight_run(prompt=prompt, image=None, audio=None)

    assert not report.ok
    [check] = report.for_field("prompt")
    assert check.outcome == "fail"
    assert "prompt" in check.message


def test_an_empty_image_source_counts_as_no_image():
    report = preflight.preflight_run(prompt="", image=MediaSource(url="  "), audio=MediaSource())

    assert [check.key for check in report.failures] == ["prompt"]
    assert report.for_field("image") == []


def test_prompt_alone_passes():
    report = preflight.preflight_run(prompt="A friendly chef", image=None, audio=None)

    assert report.ok
    assert [(check.key, check.outcome) for check in report.checks] == [("prompt", "pass")]


def test_prompt_is_not_needed_with_an_image():
    report = run_image(MediaSource(upload=upload("face.jpg", image_bytes("JPEG", (800, 800)))))

    assert report.ok, report.failures
    assert report.for_field("prompt")[0].outcome == "pass"


def test_prompt_rule_counts_a_failing_image_link_as_an_image(web):
    report = run_image(MediaSource(url="https://example.com/missing.png"), fetcher=web.fetcher())

    assert by_key(report)["prompt"].outcome == "pass"
    assert [check.key for check in report.failures] == ["image_source"]


# --- Images -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_format", "size", "shown_as"),
    [("JPEG", (1024, 1024), "JPEG"), ("PNG", (600, 800), "PNG"), ("WEBP", (768, 512), "WebP")],
)
def test_good_images_pass_every_check(image_format, size, shown_as):
    report = run_image(MediaSource(upload=upload("face", image_bytes(image_format, size))))

    checks = by_key(report)
    assert [key for key in checks if key.startswith("image")] == [
        "image_type",
        "image_size",
        "image_dimensions",
    ]
    assert all(check.outcome == "pass" for check in report.checks)
    assert checks["image_type"].message == f"{shown_as} file."
    assert checks["image_dimensions"].message == f"{size[0]} x {size[1]} pixels."


def test_small_image_is_a_warning_not_a_failure():
    report = run_image(MediaSource(upload=upload("face.png", image_bytes("PNG", (300, 400)))))

    assert report.ok
    [warning] = report.warnings
    assert warning.key == "image_dimensions"
    assert "300 x 400" in warning.message
    assert "512" in warning.message


@pytest.mark.parametrize(
    ("size", "expected"),
    [((64, 64), "at least 128 pixels"), ((127, 900), "at least 128 pixels"), ((9000, 200), "8192")],
)
def test_images_outside_sensible_dimensions_fail(size, expected):
    report = run_image(MediaSource(upload=upload("face.png", image_bytes("PNG", size))))

    [failure] = report.failures
    assert failure.key == "image_dimensions"
    assert failure.field == "image"
    assert expected in failure.message


def test_dimension_limits_are_inclusive():
    smallest = run_image(MediaSource(upload=upload("a.png", image_bytes("PNG", (128, 8192)))))
    sharp = run_image(MediaSource(upload=upload("b.png", image_bytes("PNG", (512, 512)))))

    assert by_key(smallest)["image_dimensions"].outcome == "warning"
    assert by_key(sharp)["image_dimensions"].outcome == "pass"


def test_decompression_bomb_fails_without_decoding():
    report = run_image(MediaSource(upload=upload("bomb.png", png_header(30_000, 30_000))))

    [failure] = report.failures
    assert failure.key == "image_dimensions"
    assert "too many pixels" in failure.message


def test_image_type_is_judged_by_content_not_by_name():
    text = upload("face.png", b"just some notes, not a picture\n" * 10, "image/png")

    report = run_image(MediaSource(upload=text))

    checks = by_key(report)
    assert checks["image_type"].outcome == "fail"
    assert "JPEG, PNG or WebP" in checks["image_type"].message
    assert "image_dimensions" not in checks  # nothing to measure in a file of the wrong kind


def test_real_image_in_an_unsupported_format_fails():
    report = run_image(MediaSource(upload=upload("face.jpg", image_bytes("GIF", (600, 600)))))

    assert [check.key for check in report.failures] == ["image_type"]


def test_damaged_image_fails_with_a_reason():
    broken = image_bytes("PNG", (600, 600))[:40]

    report = run_image(MediaSource(upload=upload("face.png", broken)))

    checks = by_key(report)
    assert checks["image_type"].outcome == "pass"
    assert checks["image_dimensions"].outcome == "fail"
    assert "damaged" in checks["image_dimensions"].message


def test_empty_image_fails():
    report = run_image(MediaSource(upload=upload("face.png", b"")))

    [failure] = report.failures
    assert failure.message == "The image file is empty."


def test_image_over_10_mb_fails_and_exactly_10_mb_passes(sparse_upload):
    head = image_bytes("PNG", (600, 600))
    too_big = run_image(MediaSource(upload=sparse_upload("big.png", head, 10_000_001)))
    at_limit = run_image(MediaSource(upload=sparse_upload("limit.png", head, 10_000_000)))

    failure = by_key(too_big)["image_size"]
    assert failure.outcome == "fail"
    assert failure.message.startswith("The image is 10.1 MB; the limit is 10 MB.")
    assert by_key(too_big)["image_type"].outcome == "pass"
    assert at_limit.ok, at_limit.failures


def test_upload_is_rewound_for_the_caller():
    content = image_bytes("PNG", (600, 600))
    face = upload("face.png", content)
    face.seek(17)  # wherever the form left it

    report = run_image(MediaSource(upload=face))

    assert report.ok
    assert face.tell() == 0
    assert face.read() == content


class UnreadableFile(io.RawIOBase):
    def readable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        return 0

    def tell(self):
        return 1000

    def read(self, size=-1):
        raise OSError("the disk went away")


def test_unreadable_upload_fails_instead_of_raising():
    report = run_image(MediaSource(upload=UploadedFile(file=UnreadableFile(), name="face.png")))

    [failure] = report.failures
    assert failure.key == "image_source"
    assert "could not be read" in failure.message


def test_upload_and_link_together_fail(web):
    face = upload("face.png", image_bytes())

    report = run_image(
        MediaSource(upload=face, url="https://example.com/face.png"), fetcher=web.fetcher()
    )

    [failure] = report.failures
    assert "not both" in failure.message
    assert web.requests == []


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "PNG"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "WEBP"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),
        (b"GIF89a", None),
        (b"<svg xmlns=", None),
        (b"\x89PNG", None),  # truncated signature
        (b"", None),
    ],
)
def test_image_sniff(head, expected):
    assert preflight.image_sniff(head) == expected


# --- Voice samples ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "outcome"),
    [
        (2, "warning"),
        (3, "pass"),
        (5, "pass"),
        (10, "pass"),
        (20, "warning"),
        (59.5, "warning"),
        (60, "fail"),
        (61, "fail"),
    ],
)
def test_wav_length(seconds, outcome):
    report = run_audio(MediaSource(upload=upload("voice.wav", wav_bytes(seconds))))

    checks = by_key(report)
    assert checks["audio_type"].message == "WAV file."
    assert checks["audio_size"].outcome == "pass"
    assert checks["audio_length"].outcome == outcome
    assert f"{seconds:.1f} seconds" in checks["audio_length"].message
    assert report.ok is (outcome != "fail")


def test_long_sample_failure_explains_the_fix():
    report = run_audio(MediaSource(upload=upload("voice.wav", wav_bytes(61))))

    [failure] = report.failures
    assert failure.field == "audio"
    assert failure.message == (
        "The voice sample is 61.0 seconds long; it must be under 60 seconds. "
        "Trim it to 3-10 seconds of clear speech."
    )


def test_mp3_length_is_read():
    report = run_audio(MediaSource(upload=upload("voice.bin", mp3_bytes(5))))

    checks = by_key(report)
    assert checks["audio_type"].message == "MP3 file."
    assert checks["audio_length"].outcome == "pass"
    assert checks["audio_length"].message == "5.0 seconds."


@pytest.mark.parametrize(
    ("content", "detected"),
    [
        (b"OggS\x00\x02" + b"\x00" * 200, "OGG"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 200, "MP3"),
        (b"\xff\xfb\x90\x64" + b"\x00" * 30, "MP3"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00" + b"\x00" * 200, "M4A"),
        (wav_bytes(5)[:30], "WAV"),
    ],
)
def test_corrupt_audio_fails_with_a_clear_message(content, detected):
    report = run_audio(MediaSource(upload=upload("voice", content)))

    checks = by_key(report)
    assert checks["audio_type"].outcome == "pass"
    assert checks["audio_length"].outcome == "fail"
    assert checks["audio_length"].message.startswith(
        f"The voice sample looks like a {detected} file but its length could not be read"
    )


@pytest.mark.parametrize(
    "content",
    [b"fLaC\x00\x00\x00\x22", image_bytes("PNG"), b"\xff\xf1\x50\x80 AAC in ADTS", b"hello"],
)
def test_unsupported_audio_fails_by_content(content):
    report = run_audio(MediaSource(upload=upload("voice.mp3", content, "audio/mpeg")))

    [failure] = report.failures
    assert failure.key == "audio_type"
    assert "WAV, MP3, M4A or OGG" in failure.message


def test_audio_over_50_mb_fails(sparse_upload):
    big = sparse_upload("voice.wav", wav_bytes(5), 50_000_001)

    report = run_audio(MediaSource(upload=big))

    [failure] = report.failures
    assert failure.key == "audio_size"
    assert failure.message.startswith("The voice sample is 50.1 MB; the limit is 50 MB.")


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "WAV"),
        (b"ID3\x04\x00", "MP3"),
        (b"\xff\xfb\x90\x64", "MP3"),
        (b"\xff\xf3\x90\x64", "MP3"),  # MPEG-2
        (b"\xff\xe3\x90\x64", "MP3"),  # MPEG-2.5
        (b"\x00\x00\x00\x20ftypM4A \x00\x00", "M4A"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00", "M4A"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00", "M4A"),
        (b"\x00\x00\x00\x18ftypqt  \x00\x00", None),
        (b"OggS\x00\x02", "OGG"),
        (b"\xff\xf1\x50\x80", None),  # AAC in ADTS
        (b"\xff\xd8\xff\xe0", None),  # JPEG
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", None),
    ],
)
def test_audio_sniff(head, expected):
    assert preflight.audio_sniff(head) == expected


# --- Links ------------------------------------------------------------------------------------


def test_public_https_image_link_passes(web):
    web.serve("https://example.com/face.png", body=image_bytes("PNG", (640, 640)))

    report = run_image(MediaSource(url="https://example.com/face.png"), fetcher=web.fetcher())

    assert report.ok, report.failures
    assert [(check.key, check.outcome) for check in report.for_field("image")] == [
        ("image_source", "pass"),
        ("image_type", "pass"),
        ("image_size", "pass"),
        ("image_dimensions", "pass"),
    ]
    # The connection went to the address that was checked, with the real name for Host and TLS,
    # so a second DNS answer (rebinding) cannot send it elsewhere.
    [request] = web.requests
    assert request.url.host == PUBLIC_V4
    assert request.headers["host"] == "example.com"
    assert request.extensions["sni_hostname"] == "example.com"


def test_public_ipv6_host_with_port_is_fetched(web):
    web.serve("https://cdn.example.net:8443/v.wav", body=wav_bytes(5))

    report = run_audio(MediaSource(url="https://cdn.example.net:8443/v.wav"), fetcher=web.fetcher())

    assert report.ok, report.failures
    assert web.requests[0].url.host == PUBLIC_V6
    assert web.requests[0].url.port == 8443


def test_link_content_is_judged_by_bytes_not_by_content_type(web):
    web.serve(
        "https://example.com/face.png", body=b"<html>Login</html>", **{"Content-Type": "image/png"}
    )

    report = run_image(MediaSource(url="https://example.com/face.png"), fetcher=web.fetcher())

    assert by_key(report)["image_source"].outcome == "pass"
    assert [check.key for check in report.failures] == ["image_type"]


def test_link_answering_404_fails_with_the_status(web):
    report = run_image(MediaSource(url="https://example.com/gone.png"), fetcher=web.fetcher())

    [failure] = report.failures
    assert failure.key == "image_source"
    assert failure.field == "image"
    assert failure.message.startswith("The image URL answered 404 Not Found.")


@pytest.mark.parametrize(
    "url", ["http://example.com/face.png", "ftp://example.com/face.png", "example.com/face.png"]
)
def test_only_https_links_are_fetched(web, url):
    report = run_image(MediaSource(url=url), fetcher=web.fetcher())

    [failure] = report.failures
    assert failure.message.startswith("The image URL does not start with https://.")
    assert web.requests == []


@pytest.mark.parametrize("url", ["https://", "https://exa mple.com/x.png", "https://[::1/x.png"])
def test_malformed_links_fail_without_raising(web, url):
    report = run_image(MediaSource(url=url), fetcher=web.fetcher())

    [failure] = report.failures
    assert failure.key == "image_source"
    assert web.requests == []


@pytest.mark.parametrize("address", NON_PUBLIC_ADDRESSES)
def test_host_resolving_to_a_non_public_address_is_refused(web, address):
    web.addresses["example.com"] = [address]

    error = rejection(web.fetcher(), "https://example.com/face.png")

    assert error.reason.startswith("points to a private or internal network address")
    assert web.requests == []


@pytest.mark.parametrize("address", NON_PUBLIC_ADDRESSES)
def test_literal_non_public_address_is_refused(web, address):
    host = f"[{address}]" if ":" in address else address

    error = rejection(web.fetcher(), f"https://{host}/latest/meta-data/")

    assert "private or internal" in error.reason
    assert web.requests == []
    assert web.lookups == []


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "localhost"])
def test_numeric_and_local_spellings_of_loopback_are_refused(host):
    # The real system resolver: these names resolve without any network.
    fetcher = UrlFetcher(transport=httpx.MockTransport(lambda request: httpx.Response(200)))

    error = rejection(fetcher, f"https://{host}/face.png")

    assert "internal" in error.reason


@pytest.mark.parametrize(
    "host",
    [
        "metadata.google.internal",
        "METADATA.google.internal.",
        "metadata",
        "app.localhost",
        "printer.local",
    ],
)
def test_internal_host_names_are_refused_before_any_lookup(web, host):
    error = rejection(web.fetcher(), f"https://{host}/computeMetadata/v1/")

    assert "internal host name" in error.reason
    assert web.lookups == []
    assert web.requests == []


def test_any_private_answer_among_public_ones_is_refused(web):
    web.addresses["example.com"] = [PUBLIC_V4, "10.0.0.7"]

    error = rejection(web.fetcher(), "https://example.com/face.png")

    assert "10.0.0.7" in error.reason
    assert web.requests == []


def test_unknown_host_fails(web):
    report = run_image(MediaSource(url="https://nowhere.example/face.png"), fetcher=web.fetcher())

    [failure] = report.failures
    assert failure.message.startswith("The image URL has a host name that could not be found.")


def test_redirect_to_the_metadata_address_is_refused(web):
    web.redirect("https://example.com/face.png", "https://169.254.169.254/latest/meta-data/")

    report = run_image(MediaSource(url="https://example.com/face.png"), fetcher=web.fetcher())

    [failure] = report.failures
    assert failure.message.startswith(
        "The image URL redirected, and the new link points to a private or internal network "
        "address (169.254.169.254)"
    )
    assert len(web.requests) == 1  # the metadata address was never contacted


def test_redirect_to_a_name_resolving_privately_is_refused(web):
    web.addresses["evil.example"] = ["192.168.0.10"]
    web.redirect("https://example.com/face.png", "https://evil.example/face.png", status=301)

    error = rejection(web.fetcher(), "https://example.com/face.png")

    assert error.reason.startswith("redirected, and the new link points to a private")
    assert len(web.requests) == 1


def test_redirect_to_plain_http_is_refused(web):
    web.redirect("https://example.com/face.png", "http://example.com/face.png")

    error = rejection(web.fetcher(), "https://example.com/face.png")

    assert error.reason == "redirected, and the new link does not start with https://"
    assert len(web.requests) == 1


def test_redirects_are_followed_and_vetted_at_every_hop(web):
    web.redirect("https://example.com/face.png", "/photos/face.png")
    web.redirect("https://example.com/photos/face.png", "https://cdn.example.net/f.png", 307)
    web.serve("https://cdn.example.net/f.png", body=image_bytes("JPEG", (600, 600)))

    report = run_image(MediaSource(url="https://example.com/face.png"), fetcher=web.fetcher())

    assert report.ok, report.failures
    assert [request.url.host for request in web.requests] == [PUBLIC_V4, PUBLIC_V4, PUBLIC_V6]
    assert web.lookups == ["example.com", "example.com", "cdn.example.net"]


def test_redirect_loops_are_capped(web):
    web.redirect("https://example.com/a.png", "https://example.com/b.png")
    web.redirect("https://example.com/b.png", "https://example.com/a.png")

    error = rejection(web.fetcher(), "https://example.com/a.png")

    assert error.reason == "redirected more than 3 times"
    assert len(web.requests) == 4


def test_declared_size_over_the_cap_fails_before_reading(web):
    def endless() -> Iterator[bytes]:
        raise AssertionError("the body must not be read")
        yield b""

    web.routes["https://example.com/big.png"] = lambda request: httpx.Response(
        200, content=endless(), headers={"Content-Length": "12400000"}
    )

    report = run_image(MediaSource(url="https://example.com/big.png"), fetcher=web.fetcher())

    [failure] = report.failures
    assert failure.key == "image_size"
    assert failure.message.startswith("The image at that link is 12.4 MB; the limit is 10 MB.")


def test_streamed_body_over_the_cap_stops_reading(web):
    chunks_sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal chunks_sent
        head = image_bytes("PNG", (600, 600))
        while True:
            chunks_sent += 1
            yield head + b"\x00" * (1_000_000 - len(head))

    web.routes["https://example.com/big.png"] = lambda request: httpx.Response(
        200, content=endless()
    )

    report = run_image(MediaSource(url="https://example.com/big.png"), fetcher=web.fetcher())

    [failure] = report.failures
    assert failure.key == "image_size"
    assert failure.message.startswith("The image at that link is larger than the 10 MB limit.")
    assert chunks_sent == 11  # one chunk past the cap, then the download stopped


def test_fetcher_cap_is_set_by_the_caller(web):
    web.serve("https://example.com/v.wav", body=b"x" * 2048)
    fetcher = web.fetcher()

    assert fetcher.fetch(url="https://example.com/v.wav", max_bytes=2048) == b"x" * 2048
    with pytest.raises(netsafe.UrlTooLarge):
        fetcher.fetch(url="https://example.com/v.wav", max_bytes=2047)


@pytest.mark.parametrize("timeout", [httpx.ConnectTimeout, httpx.ReadTimeout])
def test_timeout_fails(web, timeout):
    def hang(request: httpx.Request) -> httpx.Response:
        raise timeout("timed out", request=request)

    web.routes["https://example.com/face.png"] = hang

    report = run_image(
        MediaSource(url="https://example.com/face.png"), fetcher=web.fetcher(timeout_seconds=3)
    )

    [failure] = report.failures
    assert failure.message.startswith("The image URL did not answer within 3 seconds.")


def test_slow_drip_is_cut_off_by_the_overall_deadline(web):
    now = [0.0]
    chunks_sent = 0

    def drip() -> Iterator[bytes]:
        nonlocal chunks_sent
        while True:
            chunks_sent += 1
            now[0] += 1.0  # each byte arrives within the read timeout, but the total grows
            yield b"x"

    web.routes["https://example.com/face.png"] = lambda request: httpx.Response(200, content=drip())
    fetcher = web.fetcher(timeout_seconds=5, clock=lambda: now[0])

    error = rejection(fetcher, "https://example.com/face.png")

    assert error.reason == "did not answer within 5 seconds"
    assert chunks_sent == 6


def test_tls_failure_fails_with_a_clear_reason(web):
    def bad_certificate(request: httpx.Request) -> httpx.Response:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed: Hostname mismatch")
        except ssl.SSLError as exc:
            raise httpx.ConnectError("TLS handshake failed", request=request) from exc

    web.routes["https://example.com/face.png"] = bad_certificate

    report = run_image(MediaSource(url="https://example.com/face.png"), fetcher=web.fetcher())

    [failure] = report.failures
    assert failure.message.startswith("The image URL could not be reached securely")


def test_refused_connection_fails(web):
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    web.routes["https://example.com/face.png"] = refused

    error = rejection(web.fetcher(), "https://example.com/face.png")

    assert error.reason == "could not be reached"


def test_unexpected_error_becomes_a_failure_not_a_crash():
    class BrokenFetcher(UrlFetcher):
        def fetch(self, *, url: str, max_bytes: int) -> bytes:
            raise RuntimeError("bug")

    report = run_image(MediaSource(url="https://example.com/face.png"), fetcher=BrokenFetcher())

    [failure] = report.failures
    assert failure.key == "image_source"
    assert "could not check" in failure.message
