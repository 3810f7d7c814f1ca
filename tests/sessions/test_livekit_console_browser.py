"""A LiveKit session in a real Chromium at phone width in dark mode, in Test mode: Start with
the LiveKit room, the console frames the room link (the sandbox's stand-in for LiveKit Meet),
which shows the agent's own face; a spoken line appears in the room; End closes it."""

import base64
import os

import pytest
from playwright.sync_api import expect

from organizations import connections
from sandbox import services as sandbox_services
from sessions.models import AgentSession
from tests.factories import PASSWORD, AgentFactory
from tests.media import png_bytes
from tests.sessions.conftest import org_sandbox_account

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOT = os.environ.get("LIVEKIT_CONSOLE_SCREENSHOT", "")


def test_livekit_console_at_phone_width_in_dark_mode(
    sandbox_api, live_server, settings, org, member, livekit_config, browser
):
    settings.SANDBOX_EMBED_POLL_MS = 250
    connection = connections.connection_get(org=org)
    image = "data:image/png;base64," + base64.b64encode(png_bytes(256)).decode()
    with connections.client_for(connection=connection) as client:
        code = client.agent_generate(prompt="A museum guide", image=image, model="expression-1")
    sandbox_services.sandbox_clock_advance(account=org_sandbox_account(org), seconds=100_000)
    agent = AgentFactory(organization=org, code=code.agent_id, status="ready", name="Ava")

    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"{m.text} {m.location.get('url')}") if m.type == "error" else None
        ),
    )
    page.goto(f"{live_server.url}/login/")
    page.locator("main").get_by_label("Email").fill(member.user.email)
    page.locator("main").get_by_label("Password").fill(PASSWORD)
    page.locator("main").get_by_role("button", name="Log in").click()
    page.goto(f"{live_server.url}/o/{org.slug}/sessions/start/{agent.public_id}/")
    page.get_by_label("LiveKit room").check()
    page.get_by_role("button", name="Start session").click()
    session = AgentSession.objects.get()
    expect(page).to_have_url(f"{live_server.url}/o/{org.slug}/sessions/{session.public_id}/")

    room = page.frame_locator("#room-frame")
    expect(room.locator("#room-status")).to_contain_text(f"Live · room {session.room_name}")
    face = room.locator("#face")
    expect(face).to_have_attribute("src", f"/sandbox/embed/{agent.code}/face")
    expect(face).to_be_visible()
    assert face.evaluate("img => img.complete && img.naturalWidth") == 256
    expect(page.get_by_test_id("livekit-note")).to_be_visible()

    speak = page.get_by_label("Speak")
    speak.fill("Welcome to the museum")
    speak.press("Enter")
    expect(room.locator("#caption")).to_have_text("Welcome to the museum")
    expect(page.locator("#timeline-items .event-speak").last).to_contain_text(
        "delivered to this session's room"
    )
    # Nothing is wider than the phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)

    page.get_by_role("button", name="End session").click()
    page.get_by_role("button", name="End session").click()  # the confirmation
    expect(page.get_by_test_id("session-badge")).to_have_text("Ended")
    expect(page.locator("#timeline-items")).to_contain_text(
        f"LiveKit room {session.room_name} closed"
    )
    # After End the room's page, still polling until the console reloads, may hear the room is
    # gone (404 from its poll): that is the room saying so, not a fault.
    assert not [p for p in problems if "favicon" not in p and "/meet/live" not in p], problems
    context.close()


def test_livekit_settings_explain_both_paths_at_phone_width_in_dark_mode(
    live_server, org, admin, livekit_config, browser
):
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    page = context.new_page()
    page.goto(f"{live_server.url}/login/")
    page.locator("main").get_by_label("Email").fill(admin.user.email)
    page.locator("main").get_by_label("Password").fill(PASSWORD)
    page.locator("main").get_by_role("button", name="Log in").click()
    page.goto(f"{live_server.url}/o/{org.slug}/settings/#livekit")
    section = page.locator("#livekit")
    expect(section.get_by_test_id("delivery-paths")).to_contain_text("Hosted embed")
    expect(section.get_by_test_id("delivery-paths")).to_contain_text("Your own LiveKit worker")
    expect(section.get_by_label("Agent name")).to_have_value("bithuman-avatar")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    if SCREENSHOT:
        section.screenshot(path=SCREENSHOT.replace(".png", "-settings.png"))
    context.close()
