"""The operator's journey in a real Chromium, in Test mode: from a ready agent to a live sandbox
room that speaks the operator's words, then a closed room, the end, and the export."""

import csv
import io
import os
import time

import pytest
from playwright.sync_api import Page, expect

from sandbox import services as sandbox_services
from sessions.models import AgentSession, SessionEvent
from tests.factories import PASSWORD
from tests.sessions.conftest import org_sandbox_account, upstream_ready_agent

# Playwright's sync API runs an event loop in this thread; the test's own ORM calls are sync.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOM_TTL = 1.5


@pytest.fixture
def problems(page: Page) -> list[str]:
    """Console errors of the page and its frames (CSP refusals among them), and page errors.
    The portal has no favicon; the browser asking for one is not a problem of this page."""
    seen: list[str] = []

    def on_console(msg) -> None:
        where = msg.location.get("url", "")
        if msg.type == "error" and not where.endswith("/favicon.ico"):
            seen.append(f"{msg.text} ({where})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.append(str(error)))
    return seen


def test_start_speak_add_context_lose_the_room_end_and_export(
    sandbox_api, live_server, settings, org, member, page: Page, problems
):
    settings.SANDBOX_ROOM_TTL = ROOM_TTL
    settings.SANDBOX_EMBED_POLL_MS = 250
    agent = upstream_ready_agent(org, name="Ava")

    # Log in and open the ready agent.
    page.goto(f"{live_server.url}/login/")
    page.locator("main").get_by_label("Email").fill(member.user.email)
    page.locator("main").get_by_label("Password").fill(PASSWORD)
    page.locator("main").get_by_role("button", name="Log in").click()
    page.goto(f"{live_server.url}/o/{org.slug}/agents/{agent.public_id}/")

    # 1. Start session: the console embeds the sandbox room, which shows the avatar.
    page.get_by_role("button", name="Start session").click()
    session = AgentSession.objects.get()
    expect(page).to_have_url(f"{live_server.url}/o/{org.slug}/sessions/{session.public_id}/")
    room = page.frame_locator("#room-frame")
    expect(room.locator("#room-status")).to_contain_text("Live · room embed-")
    expect(room.locator("#face")).to_be_visible()

    # 2. Speak: Shift+Enter adds a line, Enter sends; the caption appears inside the iframe.
    speak = page.get_by_label("Speak")
    speak.fill("Hello")
    speak.press("Shift+Enter")
    expect(speak).to_have_value("Hello\n")
    speak.fill("Hello there")
    speak.press("Enter")
    expect(room.locator("#caption")).to_have_text("Hello there")
    timeline = page.locator("#timeline-items")
    # bitHuman lists the open page's room: the line went to this session's room only.
    expect(timeline.locator(".event-speak").last).to_contain_text(
        "delivered to this session's room"
    )
    expect(page.get_by_label("Speak")).to_have_value("")
    expect(page.get_by_test_id("room-state")).to_contain_text("Room connected")

    # A double press sends once: the first press takes the line out of the box.
    page.get_by_label("Speak").fill("Just once")
    page.get_by_role("button", name="Speak", exact=True).dblclick()
    expect(room.locator("#transcript li").last).to_have_text("Just once")
    expect(timeline).to_contain_text("Just once")
    assert SessionEvent.objects.filter(session=session, text="Just once").count() == 1

    # 3. Add context: the room lists the note.
    page.get_by_label("Add context").fill("The visitor is called Ada")
    page.get_by_role("button", name="Add context").click()
    expect(room.locator("#context-notes li")).to_have_text(["The visitor is called Ada"])
    expect(timeline.locator(".event-context")).to_contain_text("delivered to this session's room")

    # A saved quick reply fills the Speak box.
    page.get_by_label("New quick reply").fill("Welcome to the museum!")
    page.get_by_role("button", name="Save quick reply").click()
    page.get_by_role("button", name="Welcome to the museum!", exact=True).click()
    expect(page.get_by_label("Speak")).to_have_value("Welcome to the museum!")

    # 4. Close the room (the iframe goes away); once its room lapses, Speak says so.
    page.evaluate("document.getElementById('room-frame').remove()")
    time.sleep(ROOM_TTL + 1)
    page.get_by_label("Speak").fill("Still there?")
    page.get_by_label("Speak").press("Enter")
    expect(timeline.locator(".event-speak").last).to_contain_text(
        "No live room: open the room first"
    )
    expect(page.get_by_label("Speak")).to_have_value("Still there?")  # kept, not lost
    expect(page.locator("#speak-form [role=status]")).to_contain_text("No live room")

    # 5. End session.
    page.get_by_role("button", name="End session").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("End the session")
    page.get_by_role("button", name="End session").click()
    expect(page.get_by_test_id("session-badge")).to_have_text("Ended")
    expect(timeline).to_contain_text(f"Session ended by {member.user.get_short_name()}")
    expect(page.get_by_role("button", name="Speak", exact=True)).to_have_count(0)

    # 6. Export the timeline.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    with open(download.path(), encoding="utf-8") as exported:
        rows = list(csv.DictReader(io.StringIO(exported.read())))
    outcomes = [(row["kind"], row["text"], row["outcome_label"]) for row in rows]
    mine = "delivered to this session's room"
    assert ("speak", "Hello there", mine) in outcomes
    assert ("context", "The visitor is called Ada", mine) in outcomes
    assert ("speak", "Still there?", "No live room: open the room first") in outcomes
    assert outcomes[-2][0] == "system" and outcomes[-2][1].startswith("Session ended by")
    assert outcomes[-1][1].startswith("bitHuman ended the room embed-")  # terminated upstream

    assert problems == []


def _console_open(page: Page, live_server, org, member, agent) -> AgentSession:
    page.goto(f"{live_server.url}/login/")
    page.locator("main").get_by_label("Email").fill(member.user.email)
    page.locator("main").get_by_label("Password").fill(PASSWORD)
    page.locator("main").get_by_role("button", name="Log in").click()
    page.goto(f"{live_server.url}/o/{org.slug}/agents/{agent.public_id}/")
    page.get_by_role("button", name="Start session").click()
    session = AgentSession.objects.get()
    expect(page.frame_locator("#room-frame").locator("#face")).to_be_visible()
    return session


def test_typing_while_sending_and_three_quick_lines_lose_nothing(
    sandbox_api, live_server, settings, org, member, page: Page, problems
):
    settings.SANDBOX_EMBED_POLL_MS = 250
    agent = upstream_ready_agent(org, name="Ava")
    session = _console_open(page, live_server, org, member, agent)
    # Every bitHuman answer now takes 0.8 s: lines are typed and sent while others travel.
    sandbox_services.sandbox_account_configure(
        account=org_sandbox_account(org), changes={"latency_ms": 800}
    )
    room = page.frame_locator("#room-frame")
    timeline = page.locator("#timeline-items")
    speak = page.get_by_label("Speak")

    # Typing while a line is sending: the answer does not erase what was typed meanwhile.
    speak.fill("Your order ships tomorrow.")
    speak.press("Enter")
    speak.press_sequentially("Second line right after.", delay=10)
    expect(timeline.locator(".event-speak").last).to_contain_text("Your order ships tomorrow.")
    expect(timeline.locator(".event-speak").last).to_contain_text("delivered")
    expect(speak).to_have_value("Second line right after.")
    speak.press("Enter")
    expect(room.locator("#transcript li").last).to_have_text("Second line right after.")

    # Three lines within a second: queued in order, each with its own outcome.
    started = time.monotonic()
    for line in ("One.", "Two.", "Three."):
        speak.fill(line)
        speak.press("Enter")
    assert time.monotonic() - started < 1.0
    expect(page.locator("#send-queue li")).not_to_have_count(0)  # shown while they travel
    expect(room.locator("#transcript li")).to_have_text(
        ["Your order ships tomorrow.", "Second line right after.", "One.", "Two.", "Three."]
    )
    expect(page.locator("#send-queue li")).to_have_count(0)
    spoken = timeline.locator(".event-speak")
    expect(spoken).to_have_count(5)
    for index, line in enumerate(("One.", "Two.", "Three."), start=2):
        expect(spoken.nth(index)).to_contain_text(line)
        expect(spoken.nth(index).locator(".event-outcome")).to_have_text(
            "delivered to this session's room"
        )
    texts = list(
        SessionEvent.objects.filter(session=session, kind="speak")
        .order_by("created_at", "id")
        .values_list("text", flat=True)
    )
    assert texts == [
        "Your order ships tomorrow.",
        "Second line right after.",
        "One.",
        "Two.",
        "Three.",
    ]
    expect(speak).to_have_value("")
    assert problems == []
