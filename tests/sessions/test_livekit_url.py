"""The organization's LiveKit URL follows the webhook URLs' address rules, and whatever a LiveKit
server answers is never stored verbatim in a session's timeline."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from portal.errors import ApplicationError, UpstreamFailed
from portal.models import BithumanConnection, ConnectionMode
from sessions import services
from sessions.models import AgentSession, LiveKitConfig
from tests.sessions.conftest import LIVEKIT_KEY, LIVEKIT_SECRET, sandbox_livekit_project


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "wss://127.0.0.1",
        "ws://localhost:7880",
        "wss://localhost:7880",
        "wss://10.0.0.5",
        "wss://192.168.1.1:7880",
        "wss://[::1]:7880",
        "wss://[::ffff:127.0.0.1]",
        "https://169.254.169.254",
        "wss://2130706433",
        "wss://0x7f.1",
        "wss://metadata.google.internal",
        "wss://printer.local",
        "ws://93.184.216.34",  # public, but tokens would travel in clear
        "http://93.184.216.34",
    ],
)
def test_a_livekit_url_must_be_a_public_secure_address(org, admin, settings, url):
    settings.WEBHOOK_ALLOW_LOCAL = False
    with pytest.raises(ApplicationError) as caught:
        services.livekit_config_save(actor=admin, url=url, api_key="k", api_secret="s" * 20)
    assert caught.value.field == "url"
    assert not LiveKitConfig.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["wss://93.184.216.34", "https://93.184.216.34:7880"])
def test_a_public_livekit_url_is_saved(org, admin, settings, url):
    settings.WEBHOOK_ALLOW_LOCAL = False
    config = services.livekit_config_save(actor=admin, url=url, api_key="k", api_secret="s" * 20)
    assert config.url == url


HOSTILE_TEXT = "INTERNAL db password=hunter2 <script>alert(1)</script>" + "x" * 5000


class _HostileLiveKit(BaseHTTPRequestHandler):
    """A "LiveKit server" that answers every call with an error full of its own text."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"code": "internal " + HOSTILE_TEXT, "msg": HOSTILE_TEXT}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def hostile_livekit():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostileLiveKit)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _live_mode(org) -> None:
    connection = BithumanConnection.objects.get(organization=org)
    connection.mode = ConnectionMode.LIVE
    connection.live_secret = connection.sandbox_secret  # BITHUMAN_API_URL is the sandbox here
    connection.save()


@pytest.mark.django_db(transaction=True)
def test_a_livekit_servers_error_text_is_classified_not_stored(
    ready_agent, org, member, admin, settings, hostile_livekit
):
    settings.WEBHOOK_ALLOW_LOCAL = True  # the hostile server runs on this machine
    _live_mode(org)
    services.livekit_config_save(
        actor=admin, url=hostile_livekit, api_key=LIVEKIT_KEY, api_secret=LIVEKIT_SECRET
    )
    with pytest.raises(UpstreamFailed) as caught:
        services.session_start(actor=member, agent=ready_agent, kind="livekit")
    message = caught.value.message
    assert message.startswith("Could not open the LiveKit room: LiveKit did not create room ")
    assert "hunter2" not in message and "<script>" not in message and "xxxx" not in message
    assert "HTTP 500 (unknown)" in message and len(message) < 250
    assert not AgentSession.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_local_livekit_url_is_not_called_at_the_start_or_the_end(
    ready_agent, org, member, settings
):
    """Saved before the rules (or resolving elsewhere now): checked again before each use."""
    _live_mode(org)
    config = LiveKitConfig.objects.create(
        organization=org, url="wss://127.0.0.1:9", api_key=LIVEKIT_KEY, api_secret=LIVEKIT_SECRET
    )
    with pytest.raises(UpstreamFailed, match="not a public address"):
        services.session_start(actor=member, agent=ready_agent, kind="livekit")
    # Started while local servers were allowed (the sandbox's stand-in project), ended after.
    settings.WEBHOOK_ALLOW_LOCAL = True
    project = sandbox_livekit_project(org)
    config.url, config.api_key, config.api_secret = (
        project["url"],
        project["api_key"],
        project["api_secret"],
    )
    config.save()
    session = services.session_start(actor=member, agent=ready_agent, kind="livekit")
    settings.WEBHOOK_ALLOW_LOCAL = False
    assert services.session_end(actor=member, session=session) is True
    failure = session.events.get(text="Could not close the LiveKit room")
    assert "not a public address" in failure.error_message


@pytest.mark.django_db
def test_the_settings_form_shows_the_address_rule_next_to_the_field(org, admin, settings):
    from django.urls import reverse

    from tests.conftest import client_for

    settings.WEBHOOK_ALLOW_LOCAL = False
    response = client_for(admin).post(
        reverse("livekit_settings", args=[org.slug]),
        {"url": "wss://127.0.0.1:7880", "api_key": "k", "api_secret": "s" * 20},
    )
    assert response.status_code == 400
    assert "private or internal network address" in response.content.decode()
    assert not LiveKitConfig.objects.exists()
