"""Issue 16's Done-when journey in Chromium: import an agent made outside the portal, restore its
first prompt after an edit, and retry a failed agent with a new voice (one row, two attempts).
Screenshots of the new pages at phone width and in dark mode go to PORTAL_SHOTS (or tmp)."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from agents import services
from agents.models import Agent, AgentStatus, GenerationAttempt, PromptRevision
from agents.preflight import MediaSource
from tests.agents import outside
from tests.agents.test_retry import BAD_VOICE, _poll
from tests.browser.test_agent_journey import Beat, _login
from tests.factories import PASSWORD
from tests.media import wav_bytes

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # ORM reads between Playwright calls

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def csp_errors(page):
    """Console errors about the Content-Security-Policy (as tests/browser's csp_violations)."""
    seen: list[str] = []
    page.on(
        "console",
        lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return seen


def _shoot(browser: Browser, base: str, email: str, path: str, out: Path, name: str) -> None:
    for theme, width in (("dark", 390), ("light", 390), ("dark", 1280)):
        context = browser.new_context(
            viewport={"width": width, "height": 844 if width == 390 else 900},
            color_scheme=theme,
        )
        context.add_init_script(f"window.localStorage.setItem('portal-theme', '{theme}');")
        page = context.new_page()
        _login(page, base, email)
        page.goto(base + path)
        page.wait_for_load_state("networkidle")
        # Nothing wider than the phone's screen.
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} at {width}px overflows by {overflow}px"
        page.screenshot(path=str(out / f"{name}-{theme}-{width}.png"), full_page=True)
        context.close()


def test_import_restore_the_first_prompt_and_retry_with_a_new_voice(
    sandbox_api,
    live_server,
    page: Page,
    browser: Browser,
    org,
    owner,
    settings,
    tmp_path,
    csp_errors,
):
    settings.SANDBOX_TIME_SCALE = 12  # expression-1 ready in ~8 s
    settings.AGENT_POLL_INTERVAL = 0.5
    out = Path(os.environ.get("PORTAL_SHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    code = outside.generate(org, "You are Rex, a patient librarian.")
    outside.clock_advance(org, 3600)
    failed = services.agent_create(
        actor=owner,
        name="Fail Late Bot",
        system_prompt="You are Bo, a cheerful host.",
        model="expression-1",
        aspect_ratio="16:9",
        framing="portrait",
        transparency=False,
        image=MediaSource(),
        audio=MediaSource(url=BAD_VOICE),
    )
    failed = _poll(org, Agent.objects.get(pk=failed.pk))
    assert failed.status == AgentStatus.FAILED
    voice = tmp_path / "voice.wav"
    voice.write_bytes(wav_bytes())
    base = live_server.url
    _shoot(browser, base, owner.user.email, f"/o/{org.slug}/agents/import/", out, "import")

    # Import the agent made outside the portal.
    _login(page, base, owner.user.email)
    page.get_by_role("link", name="Agents").click()
    page.get_by_role("button", name="Import from bitHuman").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Import from bitHuman")
    row = page.locator(f"#importable-{code}")
    expect(row).to_contain_text("expression-1")
    row.get_by_role("checkbox").check()
    page.get_by_role("button", name="Import selected").click()
    expect(page.get_by_role("status").first).to_contain_text("Imported 1 agent")
    imported = Agent.objects.get(code=code)
    expect(page.get_by_role("heading", level=1)).to_have_text(imported.name)
    expect(page.get_by_test_id("agent-status")).to_have_text("Ready")

    # Edit its prompt, then restore the first one (revision 1, as imported).
    editor = page.locator("main form").filter(has=page.get_by_role("button", name="Save prompt"))
    editor.get_by_label("Prompt").fill("You are Rex, a strict librarian.")
    editor.get_by_role("button", name="Save prompt").click()
    expect(page.get_by_role("status").first).to_contain_text("Prompt saved")
    first = page.locator("details.revision").last
    expect(first.locator("summary")).to_contain_text("Revision 1 (imported from bitHuman)")
    first.locator("summary").click()
    first.get_by_role("button", name="Restore revision 1").click()
    page.get_by_role("button", name="Restore prompt").click()
    expect(page.get_by_role("status").first).to_contain_text("restored")
    imported.refresh_from_db()
    assert imported.system_prompt == "You are Rex, a patient librarian."
    assert PromptRevision.objects.filter(agent=imported).count() == 3

    # Retry the failed agent with a new voice: the same row, a second attempt.
    page.get_by_role("link", name="Agents").click()
    page.get_by_role("link", name="Fail Late Bot").click()
    expect(page.get_by_test_id("agent-status")).to_have_text("Failed")
    _shoot(
        browser,
        base,
        owner.user.email,
        f"/o/{org.slug}/agents/{failed.public_id}/",
        out,
        "failed-agent",
    )
    # The failure names the voice: the retry form is open, saying so.
    expect(page.locator("#retry-hint")).to_contain_text("points at the voice")
    retry = page.locator("#retry-form")
    retry.get_by_label("New voice sample").set_input_files(str(voice))
    retry.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status").first).to_contain_text("attempt 2")
    with Beat():
        expect(page.get_by_test_id("agent-status")).to_have_text("Ready", timeout=40_000)
    attempts = page.get_by_test_id("attempt")
    expect(attempts).to_have_count(2)
    expect(attempts.first).to_contain_text("Failed")
    expect(attempts.nth(1)).to_contain_text("with a new voice")
    page.get_by_role("link", name="Agents").click()
    expect(page.locator("tbody tr").filter(has_text="Fail Late Bot")).to_have_count(1)
    assert Agent.objects.filter(name="Fail Late Bot").count() == 1
    assert GenerationAttempt.objects.filter(agent=failed).count() == 2
    _shoot(
        browser,
        base,
        owner.user.email,
        f"/o/{org.slug}/agents/{failed.public_id}/",
        out,
        "retried-agent",
    )
    assert csp_errors == []
    assert PASSWORD  # the shared test password logs every context in
