"""Helpers for the page sweep and the README screenshots: every organization page of a world
with one object of every kind, visited in a real Chromium at phone and laptop width, in the light
and dark themes, with axe-core (vendored under tests/browser/vendor/axe-core) injected."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Page

from tests.conftest import client_for
from tests.isolation_support import build_path, org_methods, routes_of

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
WIDTHS = {"phone": 390, "laptop": 1280}
THEMES = ("light", "dark")
# WCAG 2.1 A/AA plus axe's best practices (landmarks, headings, regions).
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
    },
    "iframes": False,  # the session console's room (the sandbox embed) is its own document
    "resultTypes": ["violations"],
}


@cache
def _axe_source() -> str:
    return AXE.read_text() + "\n;true"


@dataclass(frozen=True)
class Problem:
    path: str
    width: str
    theme: str
    what: str

    def __str__(self) -> str:
        return f"{self.path} [{self.width}, {self.theme}]: {self.what}"


def org_pages(world: Any) -> list[str]:
    """Every full HTML page under /o/<slug>/ that answers GET, found from the URLconf (a new page
    joins the sweep by itself), with real objects of the world for the ids. Exports and htmx
    fragments are not pages."""
    client = client_for(world.owner)
    pages = []
    for route in routes_of("org"):
        if "GET" not in org_methods(route):
            continue
        path = build_path(route, world.org.slug, world.org)
        response = client.get(path)
        kind = response.get("Content-Type", "")
        if response.status_code != 200 or not kind.startswith("text/html"):
            continue
        if b"<html" not in response.content[:300]:
            continue  # an htmx fragment
        pages.append(path)
    return pages


def themed_context(browser: Any, base_url: str, width: str, theme: str) -> BrowserContext:
    """A browser context at `width` whose stored theme is `theme`, with the system preference set
    to the other one: the stored choice must win."""
    other = "dark" if theme == "light" else "light"
    context = browser.new_context(
        viewport={"width": WIDTHS[width], "height": 844 if width == "phone" else 900},
        color_scheme=other,
        base_url=base_url,
    )
    context.add_init_script(f"window.localStorage.setItem('portal-theme', {json.dumps(theme)});")
    return context


def log_in(context: BrowserContext, live_url: str, email: str, password: str) -> Page:
    page = context.new_page()
    page.goto(live_url + "/login/")
    page.locator("main").get_by_label("Email").fill(email)
    page.locator("main").get_by_label("Password").fill(password)
    page.locator("main").get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login/" not in url)
    return page


def check_page(page: Page, path: str, width: str, theme: str) -> list[Problem]:
    """Load `path`; return its horizontal page scroll and serious or critical axe findings."""
    problems: list[Problem] = []
    response = page.goto(path)
    status = response.status if response else 0
    if status != 200:
        return [Problem(path, width, theme, f"answered {status}")]
    page.wait_for_load_state("load")
    actual = page.evaluate("document.documentElement.getAttribute('data-theme')")
    if actual != theme:
        problems.append(Problem(path, width, theme, f"data-theme is {actual!r}"))
    scroll = page.evaluate(
        "({scroll: document.scrollingElement.scrollWidth, inner: window.innerWidth})"
    )
    if scroll["scroll"] > scroll["inner"]:
        widest = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                .slice(0, 3).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                  + (e.className && typeof e.className === 'string' ? '.' + e.className : ''))"""
        )
        problems.append(
            Problem(
                path,
                width,
                theme,
                f"page scrolls sideways: {scroll['scroll']} px > {scroll['inner']} px ({widest})",
            )
        )
    # Evaluated through the DevTools protocol, which the page's CSP does not govern (a <script>
    # tag would be refused: the CSP allows no inline script, and that stays true in the test).
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_source())
    result = page.evaluate("options => axe.run(document, options)", AXE_OPTIONS)
    for violation in result["violations"]:
        if violation["impact"] not in ("serious", "critical"):
            continue
        targets = [", ".join(node["target"]) for node in violation["nodes"][:3]]
        summary = violation["nodes"][0].get("failureSummary", "").replace("\n", " ")[:200]
        problems.append(
            Problem(
                path,
                width,
                theme,
                f"axe {violation['id']} ({violation['impact']}): {violation['help']} "
                f"at {targets} {summary}",
            )
        )
    return problems
