"""The new-agent form in Chromium: upload progress and a disabled button while sending, a
validation error that keeps the chosen files (no second upload needed), then the agent with its
thumbnail in the list and its voice sample's player; at phone width and in dark mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from agents.models import Agent, PendingUpload
from tests.factories import PASSWORD
from tests.media import png_bytes, wav_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # ORM reads between Playwright calls

SHOTS = Path(os.environ.get("PORTAL_SHOTS", "var/shots"))


def _login(page: Page, base: str, email: str) -> None:
    page.goto(base + "/login/")
    page.locator("main").get_by_label("Email").fill(email)
    page.locator("main").get_by_label("Password").fill(PASSWORD)
    page.locator("main").get_by_role("button", name="Log in").click()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_progress_kept_files_thumbnail_and_voice(
    live_server, sandbox_api, browser, org, member, settings, tmp_path, scheme
):
    # sandbox_api: the eager submit reaches the sandbox at once instead of retrying a dead URL.
    settings.MEDIA_ROOT = str(tmp_path / "media")
    face = tmp_path / "face.png"
    face.write_bytes(png_bytes())
    voice = tmp_path / "voice.wav"
    voice.write_bytes(wav_bytes(8.0))
    context = browser.new_context(viewport={"width": 390, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    csp: list[str] = []
    page.on(
        "console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None
    )
    _login(page, live_server.url, member.user.email)
    page.goto(f"{live_server.url}/o/{org.slug}/agents/new/")
    main = page.locator("main")
    main.get_by_label("Prompt").fill("You are Ava, a calm museum guide.")
    main.get_by_label("Face image").set_input_files(str(face))
    main.get_by_label("Voice sample").set_input_files(str(voice))

    # Record what the progress line says, and hold the request until we have seen the button
    # disabled and the progress shown.
    page.evaluate(
        """() => { window.progressSeen = [];
        new MutationObserver(() => {
          const line = document.querySelector('.upload-progress-text');
          if (line) window.progressSeen.push(line.textContent);
        }).observe(document.querySelector('main'), {subtree: true, childList: true,
                                                     characterData: true}); }"""
    )
    held = []
    page.route("**/agents/new/", lambda route: held.append(route))
    main.get_by_role("button", name="Generate").click()
    expect(main.get_by_role("button", name="Sending…")).to_be_disabled()
    expect(main.locator(".upload-status")).to_be_visible()
    expect(main.locator(".upload-progress-text")).not_to_be_empty()
    while not held:
        page.wait_for_timeout(50)
    held[0].continue_()
    page.unroute("**/agents/new/")

    # No name: a validation error, with both files kept on the server.
    expect(main.get_by_text("Kept: face.png")).to_be_visible()
    expect(main.get_by_text("Kept: voice.wav")).to_be_visible()
    expect(main.get_by_role("button", name="Generate")).to_be_enabled()
    seen = page.evaluate("window.progressSeen")
    assert any(line.startswith("Uploaded ") and " MB of " in line for line in seen), seen
    assert PendingUpload.objects.count() == 2 and not Agent.objects.exists()
    width = page.evaluate("document.querySelector('main').scrollWidth")
    assert width <= 390, width
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"new-agent-kept-390-{scheme}.png"), full_page=True)

    main.get_by_label("Name").fill("Ava")
    main.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ava")
    expect(page.get_by_role("status").first).to_contain_text("Generating Ava")
    agent = Agent.objects.get()
    assert agent.image and agent.audio and not PendingUpload.objects.exists()
    player = page.locator("audio[controls]")
    expect(player).to_have_attribute("src", f"/o/{org.slug}/agents/{agent.public_id}/media/voice/")
    assert (
        page.evaluate("() => fetch(document.querySelector('audio').src).then(r => r.status)") == 200
    )
    page.screenshot(path=str(SHOTS / f"agent-detail-voice-390-{scheme}.png"), full_page=True)

    page.goto(f"{live_server.url}/o/{org.slug}/agents/")
    thumb = page.locator("img.thumb").first
    expect(thumb).to_be_visible()
    # The image loads (from the members-only media view): wait for it rather than race it.
    loaded = page.evaluate(
        """() => { const img = document.querySelector('img.thumb');
        return img.decode().then(() => img.naturalWidth, () => 0); }"""
    )
    assert loaded > 0
    page.screenshot(path=str(SHOTS / f"agent-list-thumb-390-{scheme}.png"), full_page=True)
    assert csp == []
    context.close()
