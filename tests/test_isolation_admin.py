"""The staff admin: customer data there is for staff only; there is no per-organization admin.

The walker takes every admin URL from the resolver (`admin.site.get_urls()`: each registered
ModelAdmin's changelist, add, change, delete and history views and its bare object URL, the
site's index, app lists, password change, autocomplete, view-on-site and catch-all), fills it
with real rows of the victim organization (`ADMIN_ROWS`: a registered model without an entry
fails), and also posts every action of every ModelAdmin ("Refresh status now", "Mark failed",
"Delete selected", ...) on its changelist with a victim row selected:

- The victim organization's own owner and a member of another organization, neither staff,
  get by GET and by POST a redirect to the admin login (at once, or after the admin's own
  redirect from a bare object URL), or 403/404. No row changes; no answer carries the victim's
  names, texts, codes or ids.
- The admin's public pages (`ADMIN_PUBLIC`: login, logout, the JavaScript catalog) answer, and
  show no customer data either.
- A staff superuser gets 200 on every changelist, change and history page and no 404 on any
  object URL, which proves the walker builds real URLs and real action names.

Each walk ends by listing any admin (route, method) or (model, action) it never requested.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.test import Client, RequestFactory
from django.urls import reverse

from portal.models import User
from portal.tenancy import Role
from tests.conftest import client_for
from tests.factories import MembershipFactory
from tests.isolation_support import (
    TOKEN,
    Walk,
    World,
    db_changes,
    db_snapshot,
    lazy_rows_create,
    leaks,
    routes_of,
    victim_world,
)

pytestmark = pytest.mark.django_db

# Admin pages anyone may open, and why they are harmless.
ADMIN_PUBLIC = {
    "admin/login/": "the login form",
    "admin/logout/": "ends the caller's own session",
    "admin/jsi18n/": "the admin's JavaScript translations",
}


def _sandbox_account(world: World) -> Any:
    from organizations import connections
    from sandbox import services as sandbox_services

    secret = connections.connection_get(org=world.org).sandbox_secret
    return sandbox_services.sandbox_account_for_secret(secret=secret)


def _sandbox_agent(world: World) -> Any:
    agent, _created = _sandbox_account(world).agents.get_or_create(
        code="ZQXSANDBX1",
        defaults={
            "name": f"{TOKEN} sandbox",
            "model": "expression-1",
            "duration_seconds": 60,
            "time_scale": 1.0,
        },
    )
    return agent


def _sandbox_room(world: World) -> Any:
    from datetime import timedelta

    from django.utils import timezone

    from sandbox.models import SandboxRoom

    agent = _sandbox_agent(world)
    return SandboxRoom.objects.create(
        account=agent.account,
        agent=agent,
        name=f"{TOKEN}-room",
        kind=SandboxRoom.Kind.choices[0][0],
        expires_at=timezone.now() + timedelta(hours=1),
    )


def _access_log(model_name: str) -> Callable[[World], Any]:
    def build(world: World) -> Any:
        from axes import models as axes_models

        extra = {
            "AccessAttempt": {"get_data": "", "post_data": "", "failures_since_start": 1},
            "AccessFailureLog": {"locked_out": False},
        }.get(model_name, {})
        return getattr(axes_models, model_name).objects.create(
            user_agent="walker",
            ip_address="10.0.0.1",
            username=f"{TOKEN}@example.com",
            http_accept="*/*",
            path_info="/login/",
            **extra,
        )

    return build


def _group(world: World) -> Any:
    from django.contrib.auth.models import Group

    return Group.objects.create(name=f"{TOKEN} group")


# A row of the victim for each registered model. Add an entry when you register a model.
ADMIN_ROWS: dict[str, Callable[[World], models.Model]] = {
    "auth.Group": _group,
    "axes.AccessAttempt": _access_log("AccessAttempt"),
    "axes.AccessLog": _access_log("AccessLog"),
    "axes.AccessFailureLog": _access_log("AccessFailureLog"),
    "portal.User": lambda world: world["member"].user,
    "portal.Organization": lambda world: world.org,
    "portal.Membership": lambda world: world["member"],
    "portal.Invitation": lambda world: world["invitation"],
    "sandbox.SandboxAccount": _sandbox_account,
    "sandbox.SandboxAgent": _sandbox_agent,
    "sandbox.SandboxRoom": _sandbox_room,
    "sandbox.SandboxWebhook": lambda world: _sandbox_account(world).webhooks.create(
        url=f"https://{TOKEN}.example.com/sandbox-hook", secret="whsec_walker"
    ),
    "agents.Agent": lambda world: world["agent"],
    "agent_sessions.AgentSession": lambda world: world["session"],
    "agent_sessions.QuickReply": lambda world: world["quick_reply"],
    "agent_sessions.LiveKitConfig": lambda world: world["livekit"],
    "activity.AuditEvent": lambda world: world["audit_event"],
    "activity.WebhookEndpoint": lambda world: world["endpoint"],
    "activity.OutboundDelivery": lambda world: world["delivery"],
}


def admin_rows(world: World) -> dict[type[models.Model], models.Model]:
    rows = {}
    for model in admin.site._registry:
        label = model._meta.label
        if label not in ADMIN_ROWS:
            pytest.fail(f"{label} is registered in the admin: add a row to ADMIN_ROWS")
        rows[model] = ADMIN_ROWS[label](world)
    return rows


_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?P<pattern>[^)]*)\)")


def admin_paths(route: str, rows: dict[type[models.Model], models.Model]) -> list[str]:
    """Real paths for an admin route: the victim's row of the route's model in its object
    parameters, each app label in the app list, an unknown page for the catch-all."""
    model = next(
        (m for m in rows if route.startswith(f"admin/{m._meta.app_label}/{m._meta.model_name}/")),
        None,
    )
    agent = next(row for m, row in rows.items() if m._meta.label == "agents.Agent")
    row = rows[model] if model else agent
    if "(?P<" in route:
        match = _GROUP.search(route)
        assert match, route
        values = {
            "app_label": match.group("pattern").split("|"),
            "url": ["no-such-page/"],
        }[match.group("name")]
        bare = route.replace("^", "").replace("$", "")
        return ["/" + bare.replace(match.group(0), value) for value in values]

    parameters = {
        "object_id": row.pk,
        "id": row.pk,
        "content_type_id": ContentType.objects.get_for_model(type(row)).pk,
    }
    path = re.sub(r"<(?:[^>:]+:)?([^>]+)>", lambda m: str(parameters[m.group(1)]), route)
    return ["/" + path]


def _refused(client: Client, response: Any) -> bool:
    """403/404, or a redirect that ends at the admin login (after at most two admin hops)."""
    login = reverse("admin:login")
    for _hop in range(3):
        if response.status_code in (403, 404):
            return True
        if response.status_code != 302:
            return False
        location = urlsplit(response["Location"]).path
        if location == login:
            return True
        if not location.startswith("/admin/"):
            return False
        response = client.get(location)
    return False


# A hostile body: a name to save, a confirmed deletion, a selected action.
_BODY = {"name": "walker", "_save": "Save", "post": "yes", "index": "0"}


def _actions() -> dict[type[models.Model], set[str]]:
    """Every action of every ModelAdmin, as a superuser would be offered it, plus the
    site-wide delete (refused to non-staff whether or not the model offers it)."""
    request = RequestFactory().get("/admin/")
    request.user = User(is_staff=True, is_superuser=True, is_active=True)
    return {
        model: set(model_admin.get_actions(request)) | {"delete_selected"}
        for model, model_admin in admin.site._registry.items()
    }


@pytest.fixture
def world(org, owner, other_org):
    lazy_rows_create(other_org)
    return victim_world(org, owner)


def test_admin_refuses_organization_owners_and_members_who_are_not_staff(world, other_org):
    rows = admin_rows(world)
    outsider = MembershipFactory(organization=other_org, role=Role.MEMBER)
    routes = routes_of("admin")
    # Logging out ends the session the walk uses: it goes last (after the actions, too).
    routes.sort(key=lambda route: route == "admin/logout/")
    markers = world.markers()
    for user in (world.owner, outsider):
        client = client_for(user)
        walk = Walk()
        before = db_snapshot()
        offered = set()
        for model, names in _actions().items():
            changelist = reverse(
                f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"
            )
            for name in sorted(names):
                body = {**_BODY, "action": name, "_selected_action": [rows[model].pk]}
                response = walk.request(client, "POST", changelist, body)
                label = f"POST {changelist} action={name} as a non-staff {user.role}"
                walk.check(_refused(client, response), f"{label}: {response.status_code}")
                offered.add(name)
        for route in routes:
            for path in admin_paths(route, rows):
                for method in ("GET", "POST"):
                    response = walk.request(client, method, path, _BODY)
                    label = f"{method} {path} as a non-staff {user.role}"
                    if route not in ADMIN_PUBLIC:
                        walk.check(_refused(client, response), f"{label}: {response.status_code}")
                    found = leaks(response, markers)
                    walk.check(not found, f"{label}: shows the victim's data {found}")
        changed = db_changes(before, db_snapshot())
        walk.check(not changed, f"the admin walk as {user.role} changed data: {changed}")
        walk.assert_clean()
        expected = {(route, method) for route in routes for method in ("GET", "POST")}
        assert not walk.missing(expected), f"never exercised: {walk.missing(expected)}"
        assert {"refresh_status_now", "mark_failed", "delete_selected"} <= offered


def test_admin_works_for_staff_so_the_walk_builds_real_urls(world):
    rows = admin_rows(world)
    staff = User.objects.create_superuser(email="ops@example.com", password="staff-password-1")
    client = client_for(staff)
    pages = {
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)
        for model, row in rows.items()
        for view, args in (("changelist", []), ("change", [row.pk]), ("history", [row.pk]))
    }
    walk = Walk()
    for route in routes_of("admin"):
        # Not here: the login form and logout; the catch-all (404 by design); view-on-site
        # (404 by design: no model has get_absolute_url).
        if route in ADMIN_PUBLIC or "(?P<url>" in route or route.startswith("admin/r/"):
            continue
        for path in admin_paths(route, rows):
            status = walk.request(client, "GET", path).status_code
            if path in pages:
                walk.check(status == 200, f"GET {path} as staff: {status}")
            else:  # add and delete pages answer 403 where the admin allows neither
                walk.check(status != 404 and status < 500, f"GET {path} as staff: {status}")
    walk.assert_clean()
    assert pages <= {path for route in routes_of("admin") for path in admin_paths(route, rows)}
    # The organization's own pages are not the admin: staff who are not members get nothing.
    assert client.get(f"/o/{world.org.slug}/").status_code == 404
