"""The dashboard in a real Chromium: its charts render (a screenshot is kept)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.activity.test_dashboard import seed
from tests.factories import PASSWORD

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-results"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_dashboard_charts_render_in_chromium(live_server, page, org, owner, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    seed(org, n=6)
    violations: list[str] = []
    page.on(
        "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
    )
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", owner.user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/o/{org.slug}/?days=30")
    charts = page.locator("figure.chart svg[role=img]")
    assert charts.count() == 4
    assert page.locator("#chart-agents rect").count() > 3
    box = charts.first.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 60
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert not violations
