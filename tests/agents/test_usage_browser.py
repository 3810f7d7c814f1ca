"""The Usage page in a real Chromium: at 390 px in the dark theme (and 1280 px light) it fits
without sideways scroll and has no serious axe-core finding; the figures the sandbox produced are
on it, labelled as Test mode, and the menu leads there."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import Browser

from tests.agents import test_usage
from tests.browser.pages import check_page, log_in, themed_context
from tests.factories import PASSWORD

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # ORM set-up between Playwright calls

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
spent = test_usage.spent  # the usage tests' world: a sandbox account that spent credits


@pytest.fixture
def static_files(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def test_usage_page_at_390_px_dark_and_1280_light(
    live_server,
    browser: Browser,
    spent,
    org,
    owner,
    static_files,
):
    path = f"/o/{org.slug}/agents/usage/"
    for width, theme in (("phone", "dark"), ("laptop", "light")):
        context = themed_context(browser, live_server.url, width, theme)
        page = log_in(context, live_server.url, owner.user.email, PASSWORD)
        assert check_page(page, path, width, theme) == []
        assert page.locator("#test-mode-note").is_visible()
        assert page.locator("#balance .count").text_content() == "2,710"
        assert page.locator("#by-agent").get_by_text("Coach").is_visible()
        assert page.locator("#chart-usage-by-day svg").is_visible()
        shots = os.environ.get("USAGE_SCREENSHOTS")
        if shots:
            page.screenshot(path=f"{shots}/usage-{width}-{theme}.png", full_page=True)
        if width == "phone":
            page.get_by_role("button", name="Menu").click()
        page.get_by_role("link", name="Usage", exact=True).click()
        page.wait_for_url(f"**{path}")
        context.close()
