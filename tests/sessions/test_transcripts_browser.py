"""Issue 15's done-when line "a hosted sandbox session where a visitor talks shows their lines
and the avatar's answers in the timeline and the export", in a real Chromium: an operator starts
a session, a visitor opens the hosted room in their own browser and types (the box stands in for
the microphone), and the operator's console shows both voices, then the CSV export has them.
Also the account's live sessions page at 390 px in dark mode, looked at as a screenshot."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from sessions.models import AgentSession, EventKind
from tests.factories import PASSWORD
from tests.sessions.conftest import upstream_ready_agent

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _shots(tmp_path: Path) -> Path:
    """Where the screenshots go (TRANSCRIPT_SHOTS_DIR to keep them and look at them)."""
    folder = Path(os.environ.get("TRANSCRIPT_SHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _log_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/login/")
    page.locator("main").get_by_label("Email").fill(email)
    page.locator("main").get_by_label("Password").fill(PASSWORD)
    page.locator("main").get_by_role("button", name="Log in").click()


def test_a_visitor_talking_in_the_hosted_room_shows_in_the_timeline_and_the_export(
    sandbox_api, live_server, settings, org, member, page: Page, browser: Browser, tmp_path
):
    settings.SANDBOX_EMBED_POLL_MS = 250
    settings.SESSION_TRANSCRIPT_SECONDS = 2
    agent = upstream_ready_agent(org, name="Ava")
    _log_in(page, live_server.url, member.user.email)
    page.goto(f"{live_server.url}/o/{org.slug}/agents/{agent.public_id}/")
    page.get_by_role("button", name="Start session").click()
    session = AgentSession.objects.get()
    expect(page.get_by_test_id("room-state")).to_contain_text("Room connected", timeout=15_000)

    # A visitor on the customer's website: their own browser, the hosted room's link.
    visitor_context = browser.new_context(viewport={"width": 390, "height": 844})
    visitor = visitor_context.new_page()
    visitor.goto(session.room_url)
    expect(visitor.locator("#room-status")).to_contain_text("Live · room embed-")
    visitor.locator("#talk-text").fill("Hi, is the museum open today?")
    visitor.get_by_role("button", name="Say").click()
    expect(visitor.locator("#transcript li")).to_have_count(2)
    expect(visitor.locator("#transcript li").first).to_have_text("Hi, is the museum open today?")
    expect(visitor.locator("#talk-text")).to_have_value("")

    # The operator answers through the console; the visitor says thanks.
    page.get_by_label("Speak").fill("Yes, until 6 pm.")
    page.get_by_label("Speak").press("Enter")
    expect(visitor.locator("#caption")).to_have_text("Yes, until 6 pm.")
    visitor.locator("#talk-text").fill("Thanks!")
    visitor.get_by_role("button", name="Say").click()

    # The console's timeline shows both voices, merged by time with the operator's line.
    timeline = page.locator("#timeline-items")
    expect(timeline.locator(".event-visitor")).to_have_count(2, timeout=15_000)
    expect(timeline.locator(".event-visitor").first).to_contain_text(
        "Hi, is the museum open today?"
    )
    expect(timeline.locator(".event-visitor").last).to_contain_text("Thanks!")
    expect(timeline.locator(".event-avatar")).to_have_count(3)
    expect(timeline.locator(".event-avatar").first).to_contain_text("You said")
    kinds = timeline.locator("li.event").evaluate_all("items => items.map(i => i.dataset.kind)")
    said = [kind for kind in kinds if kind in ("visitor", "avatar", "speak")]
    assert said == ["visitor", "avatar", "speak", "avatar", "visitor", "avatar"]

    shots = _shots(tmp_path)
    page.screenshot(path=str(shots / "console-transcript.png"), full_page=True)
    visitor.screenshot(path=str(shots / "hosted-room-visitor-390.png"), full_page=True)
    visitor_context.close()

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    with open(download_info.value.path(), encoding="utf-8") as exported:
        rows = list(csv.DictReader(exported))
    lines = [(row["kind"], row["text"]) for row in rows if row["kind"] in ("visitor", "avatar")]
    assert lines[0] == ("visitor", "Hi, is the museum open today?")
    assert ("visitor", "Thanks!") in lines and len(lines) == 5
    assert session.events.filter(kind=EventKind.VISITOR).count() == 2  # never twice


def test_the_live_sessions_page_at_390_px_in_dark_mode(
    sandbox_api, live_server, settings, org, owner, browser: Browser, tmp_path
):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    from sessions import services, upstream

    agent = upstream_ready_agent(org, name="Ava")
    session = services.session_start(actor=owner, agent=agent, kind="hosted")
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    context.add_init_script("window.localStorage.setItem('portal-theme', 'dark');")
    room = context.new_page()
    room.goto(session.room_url)  # the room goes live while the page is open
    expect(room.locator("#room-status")).to_contain_text("Live · room embed-")
    upstream.pending_sessions_link()
    page = context.new_page()
    _log_in(page, live_server.url, owner.user.email)
    page.goto(f"{live_server.url}/o/{org.slug}/sessions/account/")
    expect(page.get_by_test_id("kpi-active")).to_have_text("1")
    expect(page.locator("#live-session-rows tbody tr")).to_have_count(1)
    # No sideways scroll of the page itself (the table scrolls in its own box).
    page.screenshot(path=str(_shots(tmp_path) / "live-sessions-390-dark.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    # Terminate asks first, then ends it.
    page.get_by_role("button", name="Terminate").click()
    expect(page.get_by_role("heading", name="Terminate this live session?")).to_be_visible()
    page.get_by_role("button", name="Terminate session").click()
    expect(page.get_by_text("Session terminated")).to_be_visible()
    session.refresh_from_db()
    assert not session.is_live
    context.close()
