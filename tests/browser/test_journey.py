"""The first-day journey in a real Chromium against a real server.

Sign up, land in the new organization, invite a colleague as member, accept the link in a second
browser context, switch between two organizations, and check that the member cannot reach the
members admin actions.
"""

import re

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from portal.models import Membership
from portal.tenancy import Role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _csrf(page: Page) -> str:
    return page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['x-csrftoken']")


def test_signup_invite_accept_switch_and_member_limits(
    live_server, page: Page, browser: Browser, csp_violations
):
    base = live_server.url

    # 1. Sign up, confirm the address from the emailed link: the owner lands in their new
    # organization.
    page.goto(base + "/")
    page.get_by_role("link", name="Sign up").click()
    main = page.locator("main")
    main.get_by_label("Your name").fill("Olivia Owner")
    main.get_by_label("Email").fill("olivia@example.com")
    main.get_by_label("Password").fill("a-very-good-password-1")
    main.get_by_label("Organization name").fill("Olivia Studio")
    main.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    confirm = re.search(r"https?://\S+/signup/confirm/\S+/", mail.outbox[-1].body).group(0)
    page.goto(confirm)
    page.get_by_role("button", name="Confirm my email").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Olivia Studio")
    org_url = page.url
    assert re.search(r"/o/olivia-studio/$", org_url)

    # 2. Invite a colleague as member.
    page.get_by_role("link", name="Members").click()
    main.get_by_label("Email").fill("mike@example.com")
    main.get_by_label("Role").select_option(label="Member")
    main.get_by_role("button", name="Invite").click()
    expect(page.get_by_role("status")).to_contain_text("Invitation sent to mike@example.com")
    expect(page.locator("section[aria-labelledby=invitations-heading] table")).to_contain_text(
        "mike@example.com"
    )
    link = re.search(r"https?://\S+/invitations/\S+/", mail.outbox[-1].body).group(0)

    # 3. The colleague opens the link in another browser and accepts by choosing a password.
    colleague_context = browser.new_context()
    colleague = colleague_context.new_page()
    colleague.goto(link)
    expect(colleague.get_by_role("heading", level=1)).to_have_text("Join Olivia Studio")
    colleague.locator("main").get_by_label("Password").fill("mikes-own-password-2")
    colleague.get_by_role("button", name="Accept invitation").click()
    expect(colleague.get_by_role("heading", level=1)).to_have_text("Olivia Studio")
    membership = Membership.objects.get(user__email="mike@example.com")
    assert membership.role == Role.MEMBER

    # 4. The colleague makes a second organization and switches between the two.
    colleague.locator("#org-switcher summary").click()
    colleague.get_by_role("link", name="New organization").click()
    colleague.locator("main").get_by_label("Organization name").fill("Mike Side Project")
    colleague.get_by_role("button", name="Create organization").click()
    expect(colleague.get_by_role("heading", level=1)).to_have_text("Mike Side Project")
    colleague.locator("#org-switcher summary").click()
    colleague.locator("#org-switcher").get_by_role("link", name="Olivia Studio").click()
    expect(colleague.get_by_role("heading", level=1)).to_have_text("Olivia Studio")

    # 5. As a member, the colleague sees no admin actions on the members page...
    colleague.get_by_role("link", name="Members").click()
    expect(colleague.get_by_role("heading", level=1)).to_have_text("Members")
    expect(colleague.get_by_role("button", name="Invite")).to_have_count(0)
    expect(colleague.get_by_role("button", name="Change role")).to_have_count(0)
    expect(colleague.get_by_role("button", name="Remove")).to_have_count(0)
    expect(colleague.get_by_role("link", name="Settings")).to_have_count(0)
    # ...and forging the admin requests is refused by the server.
    token = _csrf(colleague)
    invite = colleague.request.post(
        org_url + "members/invite/",
        form={"email": "sneaky@example.com", "role": "admin"},
        headers={"X-CSRFToken": token},
    )
    assert invite.status == 403
    settings_page = colleague.request.get(org_url + "settings/")
    assert settings_page.status == 403
    assert not Membership.objects.filter(user__email="sneaky@example.com").exists()

    # The owner still sees the member, now accepted, with the admin actions.
    page.reload()
    expect(page.locator("main table").first).to_contain_text("mike@example.com")
    expect(page.get_by_role("button", name="Change role").first).to_be_visible()
    colleague_context.close()

    assert csp_violations == []


def test_login_page_and_logout(live_server, page: Page, django_user_model, csp_violations):
    django_user_model.objects.create_user(
        email="lara@example.com", password="laras-password-3", email_verified_at=timezone.now()
    )
    page.goto(live_server.url + "/")
    page.locator("main").get_by_label("Email").fill("LARA@example.com")
    page.locator("main").get_by_label("Password").fill("laras-password-3")
    page.locator("main").get_by_role("button", name="Log in").click()
    # No organization yet: the portal offers to create one.
    expect(page.get_by_role("heading", level=1)).to_have_text("New organization")
    page.locator("header details.dropdown").last.locator("summary").click()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
    assert csp_violations == []
