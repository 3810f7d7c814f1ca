"""Sign-up confirmation, two-factor sign-in and staff impersonation in a real Chromium, at phone
width and in dark mode too (nothing wider than the screen; screenshots when
PORTAL_SCREENSHOTS names a folder)."""

from __future__ import annotations

import os
import re
from base64 import b32decode
from pathlib import Path

import pytest
from django.core import mail
from django_otp.oath import totp
from playwright.sync_api import Page, expect

from portal.models import User
from tests.factories import PASSWORD, MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def _look(page: Page, name: str, only: str = "") -> None:
    """The page (or the element `only`) fits a 390 px screen; saved for a human look when
    asked."""
    folder = os.environ.get("PORTAL_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{folder}/{name}.png", full_page=True)
    if only:
        box = page.locator(only).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (name, box)
        return
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right"
        " > document.documentElement.clientWidth + 1).slice(0, 5).map(e => e.tagName + '.'"
        " + e.className + '#' + e.id)"
    )
    assert width <= page.viewport_size["width"], f"{name}: {width}px wide: {wide}"


def _app_code(secret_shown: str, drift: int) -> str:
    """What an authenticator app computes from the key the page shows (RFC 6238)."""
    key = b32decode(secret_shown.replace(" ", "") + "=" * (-len(secret_shown.replace(" ", "")) % 8))
    return f"{totp(key, drift=drift):06d}"


def _login(page: Page, base: str, email: str, password: str = PASSWORD) -> None:
    page.goto(base + "/login/")
    main = page.locator("main")
    main.get_by_label("Email").fill(email)
    main.get_by_label("Password").fill(password)
    main.get_by_role("button", name="Log in").click()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_signup_confirmation_at_phone_width(live_server, page: Page, scheme, csp_violations):
    page.set_viewport_size(PHONE)
    page.emulate_media(color_scheme=scheme)
    page.goto(live_server.url + "/signup/")
    main = page.locator("main")
    main.get_by_label("Your name").fill("Nora")
    main.get_by_label("Email").fill(f"nora-{scheme}@example.com")
    main.get_by_label("Password").fill("a-very-good-password-1")
    main.get_by_label("Organization name").fill(f"Nora {scheme}")
    main.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    _look(page, f"signup-sent-{scheme}")
    link = re.search(r"https?://\S+/signup/confirm/\S+/", mail.outbox[-1].body).group(0)
    page.goto(link)
    expect(page.get_by_role("button", name="Confirm my email")).to_be_visible()
    _look(page, f"signup-confirm-{scheme}")
    page.get_by_role("button", name="Confirm my email").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Nora {scheme}")
    assert User.objects.get(email=f"nora-{scheme}@example.com").email_verified_at is not None
    assert csp_violations == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_two_factor_setup_then_login_with_a_code(live_server, page: Page, scheme, csp_violations):
    page.set_viewport_size(PHONE)
    page.emulate_media(color_scheme=scheme)
    membership = MembershipFactory(organization__name="Acme", role="owner")
    email = membership.user.email
    base = live_server.url
    _login(page, base, email)
    page.goto(base + "/account/")
    page.get_by_role("link", name="Two-factor sign-in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Two-factor sign-in")
    qr = page.get_by_role("img", name="QR code of your two-factor secret")
    expect(qr).to_be_visible()
    assert qr.evaluate("img => img.naturalWidth") > 0  # rendered: our own SVG, allowed by CSP
    _look(page, f"two-factor-setup-{scheme}")
    secret = page.locator("#totp-secret").inner_text()
    page.locator("main").get_by_label("Code").fill(_app_code(secret, 0))
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    expect(page.locator(".recovery-codes li")).to_have_count(10)
    _look(page, f"two-factor-codes-{scheme}")

    page.context.clear_cookies()  # a new visit, logged out
    _login(page, base, email)
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    _look(page, f"login-code-{scheme}")
    page.locator("main").get_by_label("Code").fill(_app_code(secret, 1))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme")
    # The owner may now require it of every member.
    page.goto(base + f"/o/{membership.organization.slug}/settings/")
    page.get_by_role("button", name="Require two-factor sign-in of every member").click()
    expect(page.locator("#security")).to_contain_text("Required")
    _look(page, f"org-two-factor-{scheme}", only="#security")
    assert csp_violations == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_staff_impersonation_banner_and_stop(live_server, page: Page, scheme, csp_violations):
    User.objects.create_superuser(email="ops@example.com", password="staff-password-1")
    membership = MembershipFactory(organization__name="Acme", role="owner")
    base = live_server.url
    page.goto(base + "/admin/login/")
    page.get_by_label("Email").fill("ops@example.com")
    page.get_by_label("Password").fill("staff-password-1")
    page.get_by_role("button", name="Log in").click()
    page.goto(base + f"/admin/portal/user/{membership.user.pk}/change/")
    page.get_by_role("link", name="See the portal as this user").click()
    page.get_by_label("Reason").fill("Ticket 77: the customer asked us to look at their agents")
    page.get_by_role("button", name="Start impersonating").click()
    page.set_viewport_size(PHONE)
    page.emulate_media(color_scheme=scheme)
    banner = page.locator("#impersonation-banner")
    expect(banner).to_contain_text(f"signed in as {membership.user.email}")
    expect(banner).to_contain_text("Ticket 77")
    page.goto(base + f"/o/{membership.organization.slug}/agents/")
    expect(banner).to_be_visible()
    # The organization's header navigation is wider than a phone on every page (not this
    # banner's doing): the banner itself must fit.
    _look(page, f"impersonation-banner-{scheme}", only="#impersonation-banner")
    banner.get_by_role("button", name="Stop").click()
    expect(page.locator("#impersonation-banner")).to_have_count(0)
    assert "/admin/" in page.url
    assert csp_violations == []
