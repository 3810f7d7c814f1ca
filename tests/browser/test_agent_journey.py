"""An agent from a face and a voice to Ready, watched live in Chromium without reloading;
then the prompt is edited, the diff viewed, and the earlier prompt restored."""

import threading

import pytest
from django.db import close_old_connections
from playwright.sync_api import Page, expect

from agents import poller
from agents.models import Agent, AgentStatus, PromptRevision
from tests.factories import PASSWORD
from tests.media import png_bytes, wav_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class Beat:
    """What Celery beat does in production: a poller tick every interval (here 0.5 s)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                poller.tick()
            finally:
                close_old_connections()

    def __enter__(self) -> "Beat":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def _login(page: Page, base: str, email: str) -> None:
    page.goto(base + "/login/")
    page.locator("main").get_by_label("Email").fill(email)
    page.locator("main").get_by_label("Password").fill(PASSWORD)
    page.locator("main").get_by_role("button", name="Log in").click()


def test_generate_watch_live_to_ready_then_edit_diff_restore(
    sandbox_api, live_server, page: Page, org, member, settings, tmp_path, csp_violations
):
    settings.SANDBOX_TIME_SCALE = 12  # expression-1 ready in ~8 s instead of ~30 s
    settings.AGENT_POLL_INTERVAL = 0.5
    face = tmp_path / "face.png"
    face.write_bytes(png_bytes())
    voice = tmp_path / "voice.wav"
    voice.write_bytes(wav_bytes())

    _login(page, live_server.url, member.user.email)
    page.get_by_role("link", name="Agents").click()
    expect(page.get_by_text("No agents yet")).to_be_visible()
    page.get_by_text("New agent").first.click()
    form = page.locator("main")
    form.get_by_label("Name").fill("Ava")
    form.get_by_label("Prompt").fill("You are Ava, a calm museum guide.")
    form.get_by_label("Model").select_option("expression-1")
    form.get_by_label("Face image").set_input_files(str(face))
    form.get_by_label("Voice sample").set_input_files(str(voice))
    form.get_by_role("button", name="Generate").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Ava")
    status = page.get_by_test_id("agent-status")
    url_before = page.url
    seen_steps: set[str] = set()
    with Beat():
        # Progress and steps advance on their own; nobody reloads the page.
        for _ in range(120):
            current = page.locator(".step-current")
            if current.count():
                seen_steps.add(current.inner_text())
            if status.inner_text() in ("Ready", "Failed"):
                break
            page.wait_for_timeout(250)
        expect(status).to_have_text("Ready", timeout=30_000)
    assert page.url == url_before
    assert len(seen_steps) >= 2, seen_steps  # the timeline moved through several steps
    expect(page.locator("#ready-panel")).to_be_visible()
    agent = Agent.objects.get()
    assert agent.status == AgentStatus.READY and agent.code
    expect(page.locator("#agent-code")).to_have_text(agent.code)
    expect(page.get_by_role("button", name="Start session")).to_be_visible()

    # The prompt editor (members, ready agents): edit twice, look at the diff, restore.
    page.reload()
    editor = page.locator("main form").filter(has=page.get_by_role("button", name="Save prompt"))
    editor.get_by_label("Prompt").fill("You are Ava, a cheerful museum guide.")
    editor.get_by_role("button", name="Save prompt").click()
    expect(page.get_by_role("status").first).to_contain_text("Prompt saved")
    editor = page.locator("main form").filter(has=page.get_by_role("button", name="Save prompt"))
    editor.get_by_label("Prompt").fill("You are Ava, a strict museum guard.")
    editor.get_by_role("button", name="Save prompt").click()
    newest = page.locator("details.revision").first
    newest.locator("summary").click()
    expect(newest.locator(".diff-add")).to_contain_text("strict museum guard")
    expect(newest.locator(".diff-del")).to_contain_text("cheerful museum guide")
    older = page.locator("details.revision").nth(1)
    older.locator("summary").click()
    older.get_by_role("button", name="Restore").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Restore this prompt")
    page.get_by_role("button", name="Restore prompt").click()
    expect(page.get_by_role("status").first).to_contain_text("restored")
    agent.refresh_from_db()
    assert agent.system_prompt == "You are Ava, a cheerful museum guide."
    # Revision 1 (the creation prompt), two edits, the restore.
    assert PromptRevision.objects.filter(agent=agent, accepted=True).count() == 4
    assert csp_violations == []
