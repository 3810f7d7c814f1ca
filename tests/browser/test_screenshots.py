"""The README's screenshots (docs/screenshots/), taken in a real Chromium from a seeded
organization: the main pages in light and dark at 1280 px, and at phone width (390 px).

`make screenshots` runs this with PORTAL_SCREENSHOTS=docs/screenshots and rewrites the files;
in an ordinary test run it writes them to a temporary folder, so `make screenshots` is known to
work (the page sweep in test_pages.py checks the same pages for layout and accessibility)."""

from __future__ import annotations

import io
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from PIL import Image
from playwright.sync_api import Browser, Page

from activity import services as activity_services
from activity.models import AuditAction, WebhookEndpoint
from sessions.models import EventKind, SessionEvent
from tests.activity.test_dashboard import seed
from tests.browser.pages import log_in
from tests.factories import (
    PASSWORD,
    AgentFactory,
    AgentSessionFactory,
    ApiKeyFactory,
    InvitationFactory,
    MembershipFactory,
    PromptRevisionFactory,
)

TARGET = os.environ.get("PORTAL_SCREENSHOTS", "")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


def _save(page: Page, path: Path, full: bool = False) -> None:
    """A screenshot as a small palette PNG (a few tens of kB); `full` for the whole page."""
    shot = Image.open(io.BytesIO(page.screenshot(full_page=full)))
    shot.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
        path, optimize=True
    )


@pytest.fixture
def demo(org, owner, settings, sandbox_api):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    org.name = "Acme Studio"
    org.save()
    owner.user.full_name = "Olivia Owner"
    owner.user.email = "olivia@acme.example"
    owner.user.save()
    seed(org, n=6)
    now = timezone.now()
    for i, name in enumerate(["Front desk", "Museum guide", "Onboarding coach"]):
        AgentFactory(
            organization=org,
            name=name,
            system_prompt=f"You are the {name.lower()} of Acme Studio. Be brief and warm.",
            created_at=now - timedelta(days=i + 1),
        )
    agent = AgentFactory(
        organization=org,
        name="Product expert",
        system_prompt="You answer questions about Acme's products.\nKeep answers short.",
    )
    PromptRevisionFactory(agent=agent, text="You answer questions about Acme's products.")
    session = AgentSessionFactory(agent=agent, started_at=now - timedelta(minutes=3))
    for kind, text, outcome in [
        (EventKind.SPEAK, "Welcome to Acme! How can I help you today?", "delivered"),
        (EventKind.SPEAK, "Our spring collection ships next week.", "delivered"),
    ]:
        SessionEvent.objects.create(session=session, kind=kind, text=text, outcome=outcome)
    MembershipFactory(organization=org, role="admin", user__full_name="Adam Admin")
    MembershipFactory(organization=org, role="member", user__full_name="Mia Member")
    MembershipFactory(organization=org, role="viewer", user__full_name="Victor Viewer")
    InvitationFactory(organization=org, email="new.colleague@acme.example")
    ApiKeyFactory(organization=org, name="CRM integration", scopes=["agents:read"])
    WebhookEndpoint.objects.create(
        organization=org,
        url="https://hooks.acme.example/portal",
        events=["agent.ready"],
        secret="s",
    )
    activity_services.audit_record(
        org=org, actor=owner, action=AuditAction.AGENT_CREATED, target=agent
    )
    return {"org": org, "owner": owner, "agent": agent, "session": session}


def test_readme_screenshots(live_server, browser: Browser, demo, tmp_path):
    out = Path(TARGET) if TARGET else tmp_path / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    slug = demo["org"].slug
    pages = {
        "dashboard": f"/o/{slug}/?days=7",
        "agents": f"/o/{slug}/agents/",
        "agent": f"/o/{slug}/agents/{demo['agent'].public_id}/",
        "members": f"/o/{slug}/members/",
        "settings": f"/o/{slug}/settings/",
    }
    shots = [
        # (file, theme, width, path or "front", open the phone menu)
        ("front-light", "light", 1280, "front", False),
        ("front-dark", "dark", 1280, "front", False),
        ("dashboard-light", "light", 1280, pages["dashboard"], False),
        ("dashboard-dark", "dark", 1280, pages["dashboard"], False),
        ("agent-light", "light", 1280, pages["agent"], False),
        ("agents-dark", "dark", 1280, pages["agents"], False),
        ("members-light", "light", 1280, pages["members"], False),
        ("settings-dark", "dark", 1280, pages["settings"], False),
        ("phone-dashboard-light", "light", 390, pages["dashboard"], False),
        ("phone-agents-dark", "dark", 390, pages["agents"], False),
        ("phone-menu-dark", "dark", 390, pages["agents"], True),
        ("phone-settings-light", "light", 390, pages["settings"], False),
    ]
    written = []
    for name, theme, width, path, open_menu in shots:
        context = browser.new_context(
            viewport={"width": width, "height": 844 if width == 390 else 800},
            color_scheme=theme,
        )
        context.add_init_script(f"window.localStorage.setItem('portal-theme', '{theme}');")
        if path == "front":
            page = context.new_page()
            page.goto(live_server.url + "/")
        else:
            page = log_in(context, live_server.url, demo["owner"].user.email, PASSWORD)
            page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        if open_menu:
            page.get_by_role("button", name="Menu").click()
        _save(page, out / f"{name}.png", full=name.startswith("dashboard"))
        written.append(out / f"{name}.png")
        context.close()
    assert len(written) == len(shots)
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        assert path.stat().st_size < 250_000, path
