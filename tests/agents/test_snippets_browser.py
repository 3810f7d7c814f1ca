"""A ready agent's page in Chromium at phone width in dark mode: the snippets' Copy buttons put
the code on the clipboard, nothing scrolls the page sideways, and adding a model asks with the
price first. Screenshots go to $PORTAL_SHOTS (var/shots)."""

from __future__ import annotations

import html as htmllib
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.agents.test_snippets_and_models import _ready
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # ORM reads between Playwright calls

SHOTS = Path(os.environ.get("PORTAL_SHOTS", "var/shots"))


def test_snippets_copy_and_fit_a_phone_in_dark_mode(live_server, sandbox_api, browser, org, member):
    agent = _ready(org, "essence-1", name="Ava Guide")
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, color_scheme="dark", base_url=live_server.url
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    csp: list[str] = []
    page.on("console", lambda m: csp.append(m.text) if "Content Security" in m.text else None)
    page.goto("/login/")
    page.locator("main").get_by_label("Email").fill(member.user.email)
    page.locator("main").get_by_label("Password").fill(PASSWORD)
    page.locator("main").get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login/" not in url)

    page.goto(f"/o/{org.slug}/agents/{agent.public_id}/")
    snippets = page.locator("#agent-snippets")
    expect(snippets.get_by_test_id("snippets-test-mode")).to_be_visible()
    scroll = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert scroll[0] <= scroll[1], f"the page scrolls sideways: {scroll}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    snippets.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "agent-snippets-phone-dark.png"), full_page=True)

    snippets.get_by_role("button", name="Copy Embed on your website").click()
    expect(snippets.get_by_role("button", name="Copy Embed on your website")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("<iframe") and f"/embed/{agent.code}?token=" in copied
    shown = htmllib.unescape(
        re.search(r'<code id="snippet-embed-html">(.*?)</code>', page.content(), re.S).group(1)
    )
    assert copied == shown.strip()

    page.locator("#model-add-select").select_option("expression-2")
    page.get_by_role("button", name="Add model…").click()
    expect(page.get_by_text("costs 2000 bitHuman credits")).to_be_visible()
    page.screenshot(path=str(SHOTS / "agent-model-add-phone-dark.png"))
    page.get_by_role("button", name="Add Expression 2 for 2000 credits").click()
    expect(page.get_by_test_id("models-adding")).to_contain_text("expression-2")
    assert not csp
    context.close()
