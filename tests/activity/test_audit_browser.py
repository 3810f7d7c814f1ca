"""The audit log for people and the suspension banner in Chromium, at phone width in light and
dark: names and links instead of model names, labelled details, the reason of a suspension."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from activity import services
from portal.models import Organization
from portal.tenancy import Role
from tests.factories import PASSWORD, AgentFactory, AgentSessionFactory, MembershipFactory

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # ORM writes between Playwright calls

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("PORTAL_SHOTS", "var/shots"))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_audit_log_and_suspension_banner_at_phone_width(live_server, browser, org, scheme):
    owner = MembershipFactory(organization=org, role=Role.OWNER)
    agent = AgentFactory(organization=org, name="Ava")
    session = AgentSessionFactory(agent=agent)
    services.audit_record(
        org=org,
        actor=owner,
        action="agent.created",
        target=agent,
        details={"model": "expression-1"},
    )
    services.audit_record(
        org=org, actor=owner, action="session.ended", target=session, details={"reason": "operator"}
    )
    services.audit_record(
        org=org,
        actor=owner,
        action="member.role_changed",
        details={"from": "member", "to": "viewer"},
    )
    Organization.objects.filter(pk=org.pk).update(
        suspended_at=timezone.now(), suspended_reason="Unpaid invoice #42"
    )
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme=scheme)
    page = context.new_page()
    page.goto(live_server.url + "/login/")
    page.locator("main").get_by_label("Email").fill(owner.user.email)
    page.locator("main").get_by_label("Password").fill(PASSWORD)
    page.locator("main").get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert").first).to_contain_text("Unpaid invoice #42")
    page.goto(f"{live_server.url}/o/{org.slug}/activity/")
    main = page.locator("main")
    expect(main.get_by_role("link", name="Ava", exact=True)).to_have_attribute(
        "href", f"/o/{org.slug}/agents/{agent.public_id}/"
    )
    expect(main).to_contain_text("member → viewer")
    expect(main).not_to_contain_text("agentsession:")
    assert page.evaluate("document.querySelector('main').scrollWidth") <= 390
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"audit-log-390-{scheme}.png"), full_page=True)
    context.close()
