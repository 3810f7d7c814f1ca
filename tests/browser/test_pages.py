"""Every organization page (and the visitor pages) in a real Chromium, at 390 px and 1280 px, in
the light and the dark theme: no sideways page scroll and no serious or critical axe-core finding.
Plus the theme switch, the collapsed menu, Escape and the skip link, by keyboard and mouse."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.pages import (
    THEMES,
    WIDTHS,
    Problem,
    check_page,
    log_in,
    org_pages,
    themed_context,
)
from tests.factories import PASSWORD
from tests.isolation_support import victim_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VISITOR_PAGES = ["/", "/login/", "/signup/", "/password-reset/"]


@pytest.fixture
def world(org, owner, settings, sandbox_api):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return victim_world(org, owner)


def test_every_org_page_fits_390_and_1280_px_in_both_themes_without_axe_findings(
    live_server, browser: Browser, world
):
    pages = org_pages(world)
    # The sweep really covers the organization: dashboard, agents, sessions, members, settings...
    names = " ".join(pages)
    for part in ("/agents/", "/sessions/", "/members/", "/settings/", "/activity/webhooks/"):
        assert part in names, part
    assert len(pages) >= 10
    problems: list[Problem] = []
    for width in WIDTHS:
        for theme in THEMES:
            visitor = themed_context(browser, live_server.url, width, theme)
            page = visitor.new_page()
            for path in VISITOR_PAGES:
                problems += check_page(page, path, width, theme)
            visitor.close()
            context = themed_context(browser, live_server.url, width, theme)
            page = log_in(context, live_server.url, world.owner.user.email, PASSWORD)
            for path in [*pages, "/account/"]:
                problems += check_page(page, path, width, theme)
            context.close()
    assert not problems, "\n".join(str(p) for p in problems)


def _background(page: Page) -> str:
    return page.evaluate("getComputedStyle(document.documentElement).backgroundColor")


def test_theme_follows_the_system_until_chosen_and_is_remembered(
    live_server, browser: Browser, world
):
    context = browser.new_context(color_scheme="dark", viewport={"width": 1280, "height": 900})
    page = log_in(context, live_server.url, world.owner.user.email, PASSWORD)
    # System (nothing chosen): the browser prefers dark, so the page is dark.
    select = page.get_by_label("Colour theme")
    expect(select).to_have_value("system")
    dark = _background(page)
    badge = page.goto(live_server.url + f"/o/{world.org.slug}/members/")
    assert badge and badge.status == 200
    owner_badge = page.locator(".badge-owner").first
    dark_badge = owner_badge.evaluate("e => getComputedStyle(e).backgroundColor")
    # Choosing Light switches at once and survives a reload and another page.
    page.get_by_label("Colour theme").select_option("light")
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    light = _background(page)
    assert light != dark
    assert owner_badge.evaluate("e => getComputedStyle(e).backgroundColor") != dark_badge
    page.goto(live_server.url + f"/o/{world.org.slug}/agents/")
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    expect(page.get_by_label("Colour theme")).to_have_value("light")
    assert _background(page) == light
    # Back to System: no attribute, dark again (the browser still prefers dark).
    page.get_by_label("Colour theme").select_option("system")
    page.reload()
    assert page.evaluate("document.documentElement.hasAttribute('data-theme')") is False
    assert _background(page) == dark
    context.close()


def test_phone_menu_collapses_opens_and_closes_on_escape(live_server, browser: Browser, world):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = log_in(context, live_server.url, world.owner.user.email, PASSWORD)
    toggle = page.get_by_role("button", name="Menu")
    settings_link = page.get_by_role("link", name="Settings", exact=True)
    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(settings_link).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(settings_link).to_be_visible()
    page.keyboard.press("Escape")
    expect(settings_link).to_be_hidden()
    expect(toggle).to_be_focused()
    # Every navigation link fits on the screen once the menu is open.
    toggle.click()
    for link in page.locator("#nav-menu a").all():
        box = link.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, link.text_content()
    settings_link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Settings")
    context.close()


def test_laptop_dropdowns_close_on_escape_and_skip_link_reaches_main(
    live_server, browser: Browser, world
):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = log_in(context, live_server.url, world.owner.user.email, PASSWORD)
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    expect(page.get_by_role("link", name="Settings", exact=True)).to_be_visible()
    switcher = page.locator("#org-switcher")
    switcher.locator("summary").click()
    expect(switcher).to_have_attribute("open", "")
    page.keyboard.press("Escape")
    expect(switcher).not_to_have_attribute("open", "")
    expect(switcher.locator("summary")).to_be_focused()
    # The first Tab from the top of the page lands on the skip link, which moves focus to main.
    page.goto(live_server.url + f"/o/{world.org.slug}/agents/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    outline = skip.evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline != "none"  # focus is visible
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    context.close()
