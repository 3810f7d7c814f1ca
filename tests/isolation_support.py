"""The machinery of the tenant-isolation walker (tests/test_isolation*.py).

- `all_routes` and `classify`: every URL pattern of the resolver, sorted into org-scoped pages,
  API operations, the staff admin and explicitly listed non-tenant routes.
- `PARAMETERS`: how to get a real object of an organization for each URL parameter name.
- `Walk`: sends the attacker's requests and records which (route, method) each one reached,
  read back from the resolver, so a walk can prove it exercised every route.
- `db_snapshot` / `db_changes`: every row of every model, and what a request changed.
- `answer` / `one_moment`: two responses compared after removing what legitimately differs
  (the value sent, UUIDs, timestamps, CSRF tokens, CSP nonces), made at the same moment.
- `victim_world`: an organization with one object of every kind, all named with `TOKEN` so a
  leak of any of them into an attacker's response is found by a plain substring search.
"""

from __future__ import annotations

import html
import json
import random
import re
import string
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any
from unittest import mock
from urllib.parse import quote, quote_plus, urlencode, urlsplit

import pytest
from django.apps import apps
from django.conf import settings
from django.db import models
from django.http import HttpResponseBase
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone

from portal.models import ApiScope, Membership, Organization
from portal.tenancy import Role
from tests.factories import (
    AgentFactory,
    AgentSessionFactory,
    ApiKeyFactory,
    InvitationFactory,
    MembershipFactory,
    PromptRevisionFactory,
    QuickReplyFactory,
    SessionEventFactory,
)

# --- Routes -------------------------------------------------------------------------------------

ORG_PREFIX = "o/<slug:org_slug>/"
API_PREFIX = "api/v1/"
ADMIN_PREFIX = "admin/"

# Routes outside any organization, by URL name, and why they are safe.
NON_TENANT_NAMES = {
    "home": "redirects to the user's own organization",
    "signup": "creates a new organization",
    "signup_sent": "static page; its resend form answers alike for every address",
    "signup_verify": "signed, expiring token bound to one account's address",
    "verification_resend": "the user's own confirmation email",
    "login": "authentication",
    "login_otp": "the second step of the caller's own sign-in",
    "two_factor": "the user's own two-factor devices",
    "impersonation_stop": "ends the caller's own impersonation",
    "logout": "authentication",
    "account": "the user's own profile",
    "password_change": "the user's own password",
    "password_change_done": "static confirmation",
    "password_reset": "by email",
    "password_reset_done": "static confirmation",
    "password_reset_confirm": "signed token",
    "password_reset_complete": "static confirmation",
    "organization_create": "creates a new organization",
    "invitation_accept": "secret token, bound to the invited email",
    "bithuman_webhook": "unguessable per-organization token plus an HMAC signature "
    "(the ids in its body are attacked in tests/test_isolation_ids.py)",
    "healthz": "liveness probe: no data, no dependency",
    "readyz": "readiness probe: which dependencies answer, no tenant data",
}
# API routes that need no key (documentation) or only answer errors.
API_PUBLIC = {"api/v1/", "api/v1/openapi.json", "api/v1/docs", "api/v1/<path:rest>"}
NON_TENANT_PREFIXES = {
    "sandbox/": "the bitHuman simulator, authenticated by its own api-secret",
    "static/": "static files",
}


@dataclass(frozen=True)
class Route:
    route: str
    name: str | None


def _join(prefix: str, pattern: str) -> str:
    # As the resolver reports a match's route: a nested regex loses its leading "^".
    return prefix + (pattern[1:] if prefix and pattern.startswith("^") else pattern)


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[Route]:
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, _join(prefix, str(p.pattern)))
        elif isinstance(p, URLPattern):
            yield Route(route=_join(prefix, str(p.pattern)), name=p.name)


def all_routes() -> list[Route]:
    return list(_walk(get_resolver().url_patterns))


def classify(route: Route) -> str:
    """The route's class: org, api, admin, non-tenant, or unclassified (which fails)."""
    if route.route.startswith(ORG_PREFIX):
        return "org"
    if route.route in API_PUBLIC:
        return "non-tenant"
    if route.route.startswith(API_PREFIX):
        return "api"
    if route.route.startswith(ADMIN_PREFIX):
        return "admin"
    if any(route.route.lstrip("^").startswith(p) for p in NON_TENANT_PREFIXES):
        return "non-tenant"
    if route.name in NON_TENANT_NAMES:
        return "non-tenant"
    return "unclassified"


def routes_of(kind: str) -> list[str]:
    """The distinct route strings of one class (the API has one pattern per operation name)."""
    return list(dict.fromkeys(r.route for r in all_routes() if classify(r) == kind))


# --- Real ids for URL parameters ----------------------------------------------------------------


def _webhook_endpoint(org: Organization, url: str = "https://hooks.example.com/x") -> Any:
    from activity.models import WebhookEndpoint

    return WebhookEndpoint.objects.create(
        organization=org, url=url, events=["agent.ready"], secret="s"
    )


def _outbound_delivery(org: Organization, endpoint: Any = None) -> Any:
    from activity.models import OutboundDelivery

    return OutboundDelivery.objects.create(
        organization=org,
        endpoint=endpoint or _webhook_endpoint(org),
        event_id=f"evt_{uuid.uuid4().hex[:12]}",
        event_type="agent.ready",
        body="{}",
    )


# How to get a real object id of an organization for each URL parameter name.
# Add an entry when a route introduces a new parameter.
def _agent_with_media(org: Organization) -> Any:
    from django.core.files.base import ContentFile

    from tests.media import png_bytes, wav_bytes

    return AgentFactory(
        organization=org,
        image=ContentFile(png_bytes(16), name="face.png"),
        audio=ContentFile(wav_bytes(0.05), name="voice.wav"),
    )


PARAMETERS: dict[str, Callable[[Organization], Any]] = {
    "member_id": lambda org: MembershipFactory(organization=org, role=Role.MEMBER).public_id,
    "invitation_id": lambda org: InvitationFactory(organization=org).public_id,
    # With an uploaded face and voice, so the media route has something to (not) serve.
    "agent_id": lambda org: _agent_with_media(org).public_id,
    "kind": lambda org: "face",
    "key_id": lambda org: ApiKeyFactory(organization=org).public_id,
    "revision_id": lambda org: PromptRevisionFactory(agent__organization=org).pk,
    "session_id": lambda org: AgentSessionFactory(agent__organization=org).public_id,
    "reply_id": lambda org: QuickReplyFactory(organization=org).public_id,
    "endpoint_id": lambda org: _webhook_endpoint(org).public_id,
    "delivery_id": lambda org: _outbound_delivery(org).public_id,
    # bitHuman's id of a runtime session of the organization's account (linked to its session).
    "runtime_id": lambda org: _runtime_session_id(org),
    "runtime_session_id": lambda org: _runtime_session_id(org),
}


def _runtime_session_id(org: Organization) -> str:
    session = AgentSessionFactory(agent__organization=org, upstream_session_id=str(uuid.uuid4()))
    return session.upstream_session_id


_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


def _fill(route: str, org_slug: str, value: Callable[[str, str | None], Any]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name == "org_slug":
            return org_slug
        return str(value(name, match.group("converter")))

    return "/" + _PARAM.sub(replace, route)


def build_path(route: str, org_slug: str, victim: Organization) -> str:
    """The route with `org_slug` and a real object of `victim` for every other parameter."""

    def value(name: str, converter: str | None) -> Any:
        if name not in PARAMETERS:
            pytest.fail(
                f"URL parameter <{name}> in {route!r} has no victim value: add it to "
                "PARAMETERS in tests/isolation_support.py"
            )
        return PARAMETERS[name](victim)

    return _fill(route, org_slug, value)


def missing_path(route: str, org_slug: str) -> str:
    """The route with `org_slug` and ids that name nothing: fresh UUIDs, unused numbers."""

    def value(name: str, converter: str | None) -> str:
        if converter == "int":
            return missing_like("1")
        return str(uuid.uuid4())  # every other object parameter is an opaque UUID

    return _fill(route, org_slug, value)


def has_object_parameters(route: str) -> bool:
    return bool(_PARAM.search(route.removeprefix(ORG_PREFIX)))


def placeholder_path(route: str) -> str:
    """Any path the route matches (to find its view)."""
    return _fill(
        route,
        "x",
        lambda name, converter: {"uuid": uuid.UUID(int=0), "int": 1}.get(converter or "", "x"),
    )


def org_methods(route: str) -> set[str]:
    """The methods an org page declares in its `tenancy.org_view` mapping."""
    view = resolve(placeholder_path(route)).func
    return set(getattr(view, "org_permissions", {}))


def missing_like(value: str) -> str:
    """A fresh value of the same shape as `value`: a UUID, a number, or the same pattern of
    letters and digits (so a form validates both the same way). Letters come from a few rare
    ones, so a fresh search term cannot match anyone's data by chance."""
    try:
        uuid.UUID(value)
    except ValueError:
        pass
    else:
        return str(uuid.uuid4())
    if value.isdigit():
        return str(random.randint(10**9, 2**31 - 1))

    def swap(char: str) -> str:
        if char.isdigit():
            return random.choice(string.digits)
        if char.isalpha():
            return random.choice("JQXZ" if char.isupper() else "jqxz")
        return char

    return "".join(swap(char) for char in value)


# --- The API, from its own OpenAPI schema -------------------------------------------------------


@cache
def openapi_schema() -> dict[str, Any]:
    from interfaces.api import api

    return api.get_openapi_schema()


def api_operations(route: str) -> dict[str, Any]:
    """The operations the API serves on a route: {"get": operation, ...}."""
    openapi_path = "/" + re.sub(r"<(?:[^>:]+:)?([^>]+)>", r"{\1}", route)
    return openapi_schema()["paths"].get(openapi_path, {})


def api_methods(route: str) -> list[str]:
    return [method.upper() for method in api_operations(route)]


def api_body_schema(route: str, method: str) -> dict[str, Any]:
    content = api_operations(route)[method.lower()].get("requestBody", {}).get("content", {})
    body_schema = content.get("application/json", {}).get("schema", {})
    if "$ref" in body_schema:
        body_schema = openapi_schema()["components"]["schemas"][body_schema["$ref"].split("/")[-1]]
    return body_schema


# Values that pass validation for fields whose type alone does not give one.
API_SAMPLES = {"prompt": "You are a friendly guide who answers briefly."}


def api_valid_body(route: str, method: str) -> dict[str, Any]:
    """A body that passes validation, so only the object lookup can refuse the request."""
    body_schema = api_body_schema(route, method)
    samples = {"string": "walker", "integer": 1, "number": 1, "boolean": True}
    body: dict[str, Any] = {}
    for name, prop in body_schema.get("properties", {}).items():
        if name in API_SAMPLES:
            body[name] = API_SAMPLES[name]
        elif name in body_schema.get("required", []):
            body[name] = prop["enum"][0] if "enum" in prop else samples.get(prop.get("type"), "x")
    return body


def api_client(org: Organization) -> Client:
    """A client holding a fresh key of `org` with every scope."""
    from organizations import apikeys

    key = apikeys.api_key_create(
        org=org, name="walker", scopes=list(ApiScope.values), created_by=None
    ).key
    return Client(headers={"Authorization": f"Bearer {key}"})


# --- Recording what the walk requested ----------------------------------------------------------

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def _messages_drop(client: Client) -> None:
    """Forget the flash messages a request queued, so the next answer stands alone."""
    client.cookies.pop("messages", None)
    if settings.SESSION_COOKIE_NAME in client.cookies:
        session = client.session
        if session.pop("_messages", None) is not None:
            session.save()


@dataclass
class Walk:
    """Sends requests and records the (route, method) each reached, as the resolver saw it."""

    requested: set[tuple[str, str]] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def request(
        self,
        client: Client,
        method: str,
        path: str,
        data: Any = "",
        content_type: str = FORM,
        **extra: Any,
    ) -> HttpResponseBase:
        if not isinstance(data, str | bytes):
            data = json.dumps(data) if content_type == JSON else urlencode(data, doseq=True)
        response = client.generic(method, path, data, content_type, **extra)
        self.requested.add((resolve(urlsplit(path).path).route, method))
        _messages_drop(client)
        return response

    def check(self, ok: bool, problem: str) -> None:
        """Collect a failure and go on, so one run lists every broken route."""
        if not ok:
            self.problems.append(problem)

    def missing(self, expected: Iterable[tuple[str, str]]) -> list[str]:
        return sorted(
            f"{method} /{route}"
            for route, method in expected
            if (route, method) not in self.requested
        )

    def assert_clean(self) -> None:
        assert not self.problems, f"{len(self.problems)} isolation problem(s):\n" + "\n".join(
            self.problems
        )


# --- What a request changed ---------------------------------------------------------------------

# Bookkeeping that a mere request may write (not data anyone else can see or change).
SNAPSHOT_IGNORED_FIELDS = {("portal.ApiKey", "last_used_at")}
# Login sessions, login-attempt logs, the admin's own log.
SNAPSHOT_SKIPPED_APPS = {"sessions", "axes", "admin"}

Snapshot = dict[tuple[str, Any], tuple[Any, ...]]


def _snapshot_models() -> list[type[models.Model]]:
    return [
        model
        for model in sorted(apps.get_models(), key=lambda m: m._meta.label)
        if model._meta.app_label not in SNAPSHOT_SKIPPED_APPS
    ]


def db_snapshot() -> Snapshot:
    """Every row of every model (bar sessions and login-attempt logs), by (model, pk)."""
    rows: Snapshot = {}
    for model in _snapshot_models():
        fields = [
            f.attname
            for f in model._meta.concrete_fields
            if (model._meta.label, f.name) not in SNAPSHOT_IGNORED_FIELDS
        ]
        for row in model._default_manager.order_by("pk").values_list("pk", *fields):
            rows[(model._meta.label, row[0])] = row[1:]
    return rows


def _organization_of(label: str, pk: Any) -> set[int | None]:
    """The organizations a row belongs to, directly or through one foreign key."""
    model = apps.get_model(label)
    row = model._default_manager.get(pk=pk)
    if isinstance(row, Organization):
        return {row.pk}
    if hasattr(row, "organization_id"):
        return {row.organization_id}
    owners: set[int | None] = set()
    for f in model._meta.concrete_fields:
        related = f.related_model
        if f.is_relation and isinstance(related, type) and hasattr(related, "organization"):
            target = getattr(row, f.name)
            owners.add(getattr(target, "organization_id", None))
    return owners or {None}


def db_changes(
    before: Snapshot, after: Snapshot, *, new_rows_of: Organization | None = None
) -> list[str]:
    """What changed between two snapshots. Rows created for `new_rows_of` (the attacker's own
    organization acting on its own data) are allowed; nothing else may change."""
    problems = [
        f"changed {label} pk={pk}"
        for (label, pk), row in before.items()
        if after.get((label, pk), row) != row
    ]
    problems += [f"deleted {label} pk={pk}" for (label, pk) in before.keys() - after.keys()]
    for label, pk in sorted(after.keys() - before.keys(), key=str):
        if new_rows_of is None or _organization_of(label, pk) != {new_rows_of.pk}:
            problems.append(f"created {label} pk={pk}")
    return problems


# --- Comparing answers --------------------------------------------------------------------------

_PER_RESPONSE = re.compile(r'[A-Za-z0-9]{64}|nonce="[^"]*"')  # CSRF tokens, CSP nonces
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def body_text(response: HttpResponseBase) -> str:
    """The body as text (streamed answers such as CSV exports are read once and kept)."""
    cached = getattr(response, "_walker_text", None)
    if cached is None:
        if getattr(response, "streaming", False):
            raw = b"".join(response.streaming_content)  # type: ignore[attr-defined]
        else:
            raw = response.content  # type: ignore[attr-defined]
        cached = raw.decode(errors="replace")
        response._walker_text = cached  # type: ignore[attr-defined]
    return cached


def _without(text: str, sent: Iterable[str]) -> str:
    for value in sorted(filter(None, sent), key=len, reverse=True):
        for form in {value, quote(value), quote_plus(value), html.escape(value)}:
            text = text.replace(form, "<sent>")
    return text


def answer(response: HttpResponseBase, sent: Iterable[str] = ()) -> tuple[int, str, str]:
    """Status, body and Location, with the value sent, UUIDs, ISO timestamps and per-response
    tokens masked."""
    sent = list(sent)

    def mask(text: str) -> str:
        text = _PER_RESPONSE.sub("", _without(text, sent))
        return _TIMESTAMP.sub("<time>", _UUID.sub("<uuid>", text))

    return response.status_code, mask(body_text(response)), mask(response.get("Location", ""))


@contextmanager
def one_moment() -> Iterator[None]:
    """Stop `timezone.now` while two answers that are compared are made (a live session's
    duration would otherwise tick between them)."""
    with mock.patch.object(timezone, "now", return_value=timezone.now()):
        yield


def leaks(
    response: HttpResponseBase, markers: Iterable[str], sent: Iterable[str] = ()
) -> list[str]:
    """The victim's markers found in a response (the values the attacker sent excepted)."""
    text = _without(body_text(response), sent)
    location = _without(response.get("Location", ""), sent)
    return [m for m in markers if m and (m in text or m in location)]


# --- A victim organization with one object of every kind ----------------------------------------

TOKEN = "zqxvictim"  # in every name and text of the victim's objects: found by substring search


@dataclass
class World:
    org: Organization
    owner: Membership
    objects: dict[str, models.Model]

    def __getitem__(self, name: str) -> Any:
        return self.objects[name]

    def values(self) -> dict[str, str]:
        """What an attacker could paste into a field: every public id, the numeric ids users see
        (prompt revisions in URLs, session events over the API), the slug, a code, a name and
        an email address."""
        values = {"organization slug": self.org.slug}
        for name, obj in self.objects.items():
            if hasattr(obj, "public_id"):
                values[f"{name} id"] = str(obj.public_id)
        values |= {
            "revision number": str(self["revision"].pk),
            "event number": str(self["event"].pk),
            "agent code": self["agent"].code,
            "agent name": self["agent"].name,
            "member email": self["member"].user.email,
        }
        return values

    def markers(self) -> list[str]:
        """Strings only the victim's data contains."""
        found = [TOKEN, self["agent"].code, self["flying_agent"].code]
        found += [str(obj.public_id) for obj in self.objects.values() if hasattr(obj, "public_id")]
        return found


def lazy_rows_create(*orgs: Organization) -> None:
    """Make the rows an organization gets on first use (its bitHuman connection and sandbox
    account), so the walk's snapshots only see what the attacks themselves change."""
    from organizations import connections

    for org in orgs:
        connections.connection_get(org=org)


def victim_world(org: Organization, owner: Membership) -> World:
    from django.core.files.base import ContentFile

    from activity import services as activity_services
    from activity.models import AuditAction
    from agents.models import PendingUpload
    from sessions.models import LiveKitConfig

    lazy_rows_create(org)
    agent = AgentFactory(
        organization=org,
        name=f"{TOKEN} Agent",
        system_prompt=f"{TOKEN} prompt",
        code="ZQXVICTIM1",
    )
    flying = AgentFactory(
        organization=org,
        name=f"{TOKEN} Flying",
        code="ZQXVICTIM2",
        status="generating",
        progress=0.4,
    )
    session = AgentSessionFactory(agent=agent, room_name=f"{TOKEN}room")
    endpoint = _webhook_endpoint(org, url=f"https://{TOKEN}.example.com/hook")
    member = MembershipFactory(
        organization=org,
        role=Role.MEMBER,
        user__email=f"{TOKEN}-member@example.com",
        user__full_name=f"{TOKEN} Member",
    )
    objects: dict[str, models.Model] = {
        "agent": agent,
        "flying_agent": flying,
        # Numeric ids far from the sequences, so masking them in an answer masks only them.
        "revision": PromptRevisionFactory(
            pk=4_200_001, agent=agent, text=f"{TOKEN} earlier prompt"
        ),
        "session": session,
        "event": SessionEventFactory(pk=4_200_002, session=session, text=f"{TOKEN} said this"),
        "quick_reply": QuickReplyFactory(organization=org, text=f"{TOKEN} reply"),
        "member": member,
        "invitation": InvitationFactory(organization=org, email=f"{TOKEN}-invitee@example.com"),
        "api_key": ApiKeyFactory(organization=org, name=f"{TOKEN} key"),
        "endpoint": endpoint,
        "delivery": _outbound_delivery(org, endpoint),
        "livekit": LiveKitConfig.objects.create(
            organization=org, url=f"wss://{TOKEN}.livekit.cloud", api_key=f"{TOKEN}key"
        ),
        "audit_event": activity_services.audit_record(
            org=org, actor=owner, action=AuditAction.AGENT_CREATED, target=agent
        ),
        # A file the owner chose on a failed new-agent form (kept_image_id / kept_audio_id).
        "pending_upload": PendingUpload.objects.create(
            organization=org,
            user=owner.user,
            kind="image",
            file=ContentFile(b"\x89PNG kept", name="face.png"),
            original_name=f"{TOKEN} face.png",
            expires_at=timezone.now() + timedelta(hours=1),
        ),
    }
    return World(org=org, owner=owner, objects=objects)
