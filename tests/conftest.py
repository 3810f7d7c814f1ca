"""Shared fixtures: two organizations (`org`, `other_org`) and a user of every role in `org`."""

import os

import pytest
from django.core.cache import cache
from django.test import Client

from portal.models import Membership
from portal.tenancy import Role
from tests.factories import MembershipFactory, OrganizationFactory

AUTH_BACKEND = "portal.backends.EmailBackend"


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def org(db):
    return OrganizationFactory(name="Acme", slug="acme")


@pytest.fixture
def other_org(db):
    return OrganizationFactory(name="Globex", slug="globex")


def _member(org, role):
    return MembershipFactory(organization=org, role=role)


@pytest.fixture
def owner(org) -> Membership:
    return _member(org, Role.OWNER)


@pytest.fixture
def admin(org) -> Membership:
    return _member(org, Role.ADMIN)


@pytest.fixture
def member(org) -> Membership:
    return _member(org, Role.MEMBER)


@pytest.fixture
def viewer(org) -> Membership:
    return _member(org, Role.VIEWER)


@pytest.fixture
def other_owner(other_org) -> Membership:
    return _member(other_org, Role.OWNER)


@pytest.fixture
def sandbox_api(live_server, settings):
    """bitHuman, as the portal sees it, is the sandbox served over HTTP by the live server:
    Test mode (SANDBOX_BASE_URL) and Live mode (BITHUMAN_API_URL) both point there."""
    settings.BITHUMAN_API_URL = live_server.url + "/sandbox"
    settings.SANDBOX_BASE_URL = live_server.url + "/sandbox"
    settings.SANDBOX_WEBHOOK_ALLOW_LOCAL = True  # our receivers are http:// on this machine
    return live_server.url + "/sandbox"


def client_for(membership_or_user) -> Client:
    user = getattr(membership_or_user, "user", membership_or_user)
    client = Client()
    client.force_login(user, backend=AUTH_BACKEND)
    return client


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Drive Debian's Chromium (Playwright's own download cannot work here)."""
    executable = os.environ.get("PORTAL_BROWSER") or "/usr/bin/chromium"
    if not os.path.exists(executable):
        pytest.fail(
            f"No Chromium at {executable}: install Debian's chromium (apt-get install chromium) "
            "or set PORTAL_BROWSER to a Chromium binary. `make test` installs it when it can."
        )
    return {
        **browser_type_launch_args,
        "executable_path": executable,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
        ],
    }
