"""Tenant isolation for ids in bodies and query strings, the way real IDOR bugs slip in: the URL
is the attacker's own, the victim's id rides in a form field, a filter or a JSON property.

Discovery, so new inputs are covered by default:

- pages: the source of every org view (and of the helpers it hands `request` to) is parsed for
  `request.GET` / `request.POST` reads and for forms bound to them (every field of such a form
  is an input); each GET page is also requested with the htmx header and without, recording
  every query-string key the code actually reads.
- API: every query parameter and JSON body property of every operation in the OpenAPI schema.

Each input is classified:

- reference: names an object (id, slug, code, or a name typed to confirm). Automatic for names
  ending in `id`/`ids`, names of tenant models or of foreign keys to them, and UUID or
  model-choice form fields; otherwise listed in `INPUTS`.
- search: free text matched against the organization's own data (`INPUTS`).
- plain: names nothing in another organization (`INPUTS`); it gets a valid sample value so
  the request reaches the lookup of the input under attack.
An input that is none of these fails `test_every_input_is_classified`, and so does an `INPUTS`
entry no route reads any more.

The rule for a reference or search input: authenticated in the attacker's own organization
(its slug and its objects in the URL, its API key), the victim's value must get exactly the
answer a fresh random value of the same shape gets: same status, same body and Location once
the value sent, UUIDs, timestamps, CSRF tokens and CSP nonces are masked (both requests are
made at the same `timezone.now()`). That one rule covers every shape the answer takes, so none
is decided per case: a 404 (a list filtered by a foreign agent), a form error (a foreign slug
typed to confirm a deletion), an empty list (an API filter), or a new object of the
attacker's own (a foreign id offered as a new agent's id). Every value of the
victim (each object's public id, the prompt revision and session event numbers, the slug, an
agent code, an agent name and a member's email) is sent to every such input. Besides, no
existing row may change (new rows must be the attacker's own) and none of the victim's names,
texts, codes or ids may appear in the answer. (Regression: the victim's agent id sent as the
new-agent form's `submission_id` used to answer "This form was already used", confirming the
id exists; agents/views.py now namespaces that id by organization.)

Inputs no form or schema describes are attacked by hand below: the `Idempotency-Key` header of
the API and the agent codes in the bitHuman webhook receiver's body.
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock
from urllib.parse import urlencode

import pytest
from django import forms
from django.apps import apps
from django.http import QueryDict
from django.test import Client
from django.urls import resolve

from portal.models import Organization
from portal.tenancy import OrgScopedModel
from tests.conftest import client_for
from tests.isolation_support import (
    API_SAMPLES,
    JSON,
    Walk,
    answer,
    api_client,
    api_methods,
    api_operations,
    api_valid_body,
    body_text,
    build_path,
    db_changes,
    db_snapshot,
    lazy_rows_create,
    leaks,
    missing_like,
    one_moment,
    org_methods,
    placeholder_path,
    routes_of,
    victim_world,
)

pytestmark = pytest.mark.django_db

REFERENCE, SEARCH, PLAIN = "reference", "search", "plain"

# Inputs whose name does not say what they are, and why. (References by name or field type need
# no entry; see the module docstring.)
INPUTS: dict[str, tuple[str, str]] = {
    "confirm": (REFERENCE, "an organization slug or agent name typed to confirm a deletion"),
    "codes": (
        REFERENCE,
        "bitHuman agent codes to import: bitHuman is asked first, so another organization's "
        "code answers like an unknown one",
    ),
    "confirmation": (REFERENCE, "the organization's slug typed to confirm revoking runtime keys"),
    "room": (PLAIN, "a room name repeated in the Terminate confirmation question, looked up never"),
    "reason": (PLAIN, "free text sent to bitHuman with revoke-all"),
    "q": (SEARCH, "agent search: names and codes"),
    "search": (SEARCH, "agent search over the API"),
    "actor": (SEARCH, "audit filter: matches actor labels (emails, key names)"),
    "target": (SEARCH, "audit filter: matches target labels and target ids"),
    "action": (PLAIN, "an audit action, or the LiveKit form's remove button"),
    "actor_kind": (PLAIN, "user, api key, system or staff"),
    "api_key": (PLAIN, "the organization's own LiveKit key, a credential not a lookup"),
    "agent_name": (PLAIN, "the dispatch name of the organization's own LiveKit worker"),
    "api_secret": (PLAIN, "a secret the organization pastes (bitHuman or LiveKit)"),
    "api_keys": (PLAIN, "revoke or keep, removing a member: the keys are the removed member's"),
    "aspect_ratio": (PLAIN, "a choice"),
    "require_two_factor": (PLAIN, "on or off: the organization's own setting"),
    "audio": (PLAIN, "an uploaded file"),
    "audio_base64": (PLAIN, "an uploaded file"),
    "audio_url": (PLAIN, "a public https URL fetched by pre-flight, not an object lookup"),
    "context": (PLAIN, "text sent to the avatar"),
    "days": (PLAIN, "the dashboard's range"),
    "description": (PLAIN, "free text"),
    "email": (PLAIN, "an address to invite; anyone may be invited"),
    "enabled": (PLAIN, "a checkbox"),
    "events": (PLAIN, "webhook event types"),
    "expires_at": (PLAIN, "a date"),
    "framing": (PLAIN, "a choice"),
    "image": (PLAIN, "an uploaded file"),
    "image_base64": (PLAIN, "an uploaded file"),
    "image_url": (PLAIN, "a public https URL fetched by pre-flight, not an object lookup"),
    "kind": (PLAIN, "hosted or livekit"),
    "limit": (PLAIN, "paging"),
    "message": (PLAIN, "text the avatar speaks"),
    "model": (PLAIN, "a bitHuman model name"),
    "name": (PLAIN, "the name of something the attacker creates in its own organization"),
    "offset": (PLAIN, "paging"),
    "page": (PLAIN, "paging"),
    "prompt": (PLAIN, "text"),
    "reply": (PLAIN, "text of a new quick reply"),
    "role": (PLAIN, "a role name"),
    "scopes": (PLAIN, "API key scopes"),
    "since": (PLAIN, "a date"),
    "status": (PLAIN, "a status name"),
    "system_prompt": (PLAIN, "text"),
    "transparency": (PLAIN, "a checkbox"),
    "until": (PLAIN, "a date"),
    "url": (PLAIN, "the attacker's own webhook or LiveKit URL"),
}

# Valid values for plain fields whose type alone does not give one (pre-flight wants a prompt).
PAGE_SAMPLES = {"system_prompt": API_SAMPLES["prompt"]}
PROJECT_APPS = {"portal", "agents", "sessions", "activity"}


@dataclass(frozen=True)
class Input:
    route: str
    method: str  # GET: the query string; others: the body
    name: str
    form: type[forms.BaseForm] | None = None  # the page form that reads it, if any

    def __str__(self) -> str:
        where = "query" if self.method == "GET" else "body"
        return f"{self.method} /{self.route} {where} {self.name!r}"


# --- Discovery: pages, by reading their source ---------------------------------------------------


def _querydict(node: ast.AST) -> str | None:
    """Which query dict `node` is, when it is `request.GET` or `request.POST`."""
    if (
        isinstance(node, ast.Attribute)
        and node.attr in ("GET", "POST")
        and isinstance(node.value, ast.Name)
        and node.value.id == "request"
    ):
        return node.attr
    return None


def _callee(node: ast.expr, namespace: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        return namespace.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return getattr(namespace.get(node.value.id), node.attr, None)
    return None


def _source_reads(
    func: Callable[..., Any], bindings: dict[str, str], seen: set[Any]
) -> set[tuple[str, str, type[forms.BaseForm] | None]]:
    """(GET/POST, key, form) read by `func`, following the project functions it hands
    `request` to; `bindings` are the string literals those helpers received by name."""
    func = inspect.unwrap(func)
    if (func, tuple(sorted(bindings.items()))) in seen:
        return set()
    seen.add((func, tuple(sorted(bindings.items()))))
    namespace = func.__globals__

    def literal(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return bindings.get(node.id) if isinstance(node, ast.Name) else None

    found: set[tuple[str, str, type[forms.BaseForm] | None]] = set()
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(func)))):
        if isinstance(node, ast.Subscript) and (source := _querydict(node.value)):
            if key := literal(node.slice):
                found.add((source, key, None))
        elif isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In):
            if (source := _querydict(node.comparators[0])) and (key := literal(node.left)):
                found.add((source, key, None))
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and (source := _querydict(node.func.value)):
                reads = node.func.attr in ("get", "getlist") and node.args
                if reads and (key := literal(node.args[0])):
                    found.add((source, key, None))
                continue
            target = _callee(node.func, namespace)
            if isinstance(target, type) and issubclass(target, forms.BaseForm):
                if node.args or any(k.arg == "data" for k in node.keywords):  # bound
                    source = "GET" if "request.GET" in ast.unparse(node) else "POST"
                    found |= {(source, name, target) for name in target.base_fields}
            elif (
                inspect.isfunction(target)
                and target.__module__.split(".")[0] in PROJECT_APPS
                and "request"
                in {ast.unparse(a) for a in [*node.args, *(k.value for k in node.keywords)]}
            ):
                params = list(inspect.signature(target).parameters)
                passed = {params[i]: literal(a) for i, a in enumerate(node.args) if i < len(params)}
                passed |= {k.arg: literal(k.value) for k in node.keywords if k.arg}
                named = {name: value for name, value in passed.items() if value}
                found |= _source_reads(target, named, seen)
    return found


def static_page_inputs() -> set[Input]:
    inputs = set()
    for route in routes_of("org"):
        view = resolve(placeholder_path(route)).func
        for source, name, form in _source_reads(view, {}, set()):
            method = "GET" if source == "GET" else "POST"
            if method in org_methods(route):
                inputs.add(Input(route, method, name, form))
    return inputs


@contextmanager
def query_reads() -> Iterator[set[str]]:
    """Every key any QueryDict is asked for while the block runs."""
    keys: set[str] = set()

    def recording(name: str) -> Callable[..., Any]:
        original = getattr(QueryDict, name)

        def read(self: QueryDict, key: str, *args: Any, **kwargs: Any) -> Any:
            keys.add(key)
            return original(self, key, *args, **kwargs)

        return read

    names = ("get", "getlist", "__getitem__", "__contains__")
    with mock.patch.multiple(QueryDict, **{name: recording(name) for name in names}):
        yield keys


def runtime_page_inputs(client: Client, org: Organization) -> set[Input]:
    """The query-string keys each GET page reads when requested (page and fragment); a dummy
    key makes `request.GET or None` forms bind, so their fields are read too."""
    inputs = set()
    for route in routes_of("org"):
        if "GET" not in org_methods(route):
            continue
        path = build_path(route, org.slug, org) + "?walker=1"
        for headers in ({}, {"HX-Request": "true"}):
            with query_reads() as keys:
                client.get(path, headers=headers)
            inputs |= {Input(route, "GET", key) for key in keys - {"walker"}}
    return inputs


def api_inputs() -> set[Input]:
    from tests.isolation_support import api_body_schema

    inputs = set()
    for route in routes_of("api"):
        for method in api_methods(route):
            operation = api_operations(route)[method.lower()]
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    inputs.add(Input(route, method, parameter["name"]))
            for name in api_body_schema(route, method).get("properties", {}):
                inputs.add(Input(route, method, name))
    return inputs


# --- Classification -----------------------------------------------------------------------------


def reference_names() -> set[str]:
    """Tenant models' names and the names of foreign keys to them (`agent`, `session`, ...)."""

    def tenant(model: Any) -> bool:
        return isinstance(model, type) and (
            issubclass(model, OrgScopedModel) or model is Organization
        )

    names = set()
    for model in apps.get_models():
        if tenant(model):
            names.add(model._meta.model_name)
        names |= {f.name for f in model._meta.concrete_fields if tenant(f.related_model)}
    return names


def input_class(item: Input) -> str | None:
    field = item.form.base_fields.get(item.name) if item.form else None
    by_type = (forms.UUIDField, forms.ModelChoiceField, forms.ModelMultipleChoiceField)
    if item.name.endswith(("id", "ids")) or item.name in reference_names():
        return REFERENCE
    if isinstance(field, by_type):
        return REFERENCE
    return INPUTS.get(item.name, (None, ""))[0]


# --- Attacking ----------------------------------------------------------------------------------


def _form_sample(name: str, field: forms.Field) -> Any:
    if name in PAGE_SAMPLES:
        return PAGE_SAMPLES[name]
    if not field.required:
        return None
    choices = [value for value, _ in getattr(field, "choices", []) if value]
    samples: list[tuple[type[forms.Field], Any]] = [
        (forms.MultipleChoiceField, choices[:1]),
        (forms.ChoiceField, choices[0] if choices else ""),
        (forms.UUIDField, str(uuid.uuid4())),
        (forms.EmailField, "walker@example.com"),
        (forms.URLField, "https://walker.example.com/hook"),
        (forms.DateTimeField, "2030-01-01 00:00"),
        (forms.DateField, "2030-01-01"),
        (forms.BooleanField, "on"),
        (forms.IntegerField, "1"),
    ]
    return next((sample for kind, sample in samples if isinstance(field, kind)), "walker")


def page_valid_body(route: str, inputs: set[Input]) -> dict[str, Any]:
    """Valid values for every form the route's POST binds."""
    body: dict[str, Any] = {}
    for form in {i.form for i in inputs if i.route == route and i.method == "POST" and i.form}:
        for name, field in form.base_fields.items():
            if (sample := _form_sample(name, field)) is not None:
                body.setdefault(name, sample)
    return body


@pytest.fixture
def world(org, owner, other_org, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 100_000  # the walk sends hundreds of API requests
    lazy_rows_create(other_org)
    return victim_world(org, owner)


def _distinct(inputs: set[Input]) -> list[Input]:
    """One input per (route, method, name), the one read through a form when there is one."""
    chosen: dict[tuple[str, str, str], Input] = {}
    for item in sorted(inputs, key=lambda i: (str(i), i.form is None)):
        chosen.setdefault((item.route, item.method, item.name), item)
    return list(chosen.values())


def _difference(foreign: tuple[int, str, str], missing: tuple[int, str, str]) -> str:
    """The first line where the victim's answer and a missing value's answer part."""
    if foreign[0] != missing[0]:
        return f"answers {foreign[0]} where a fresh value answers {missing[0]}"
    lines = [*foreign[1].splitlines(), foreign[2]], [*missing[1].splitlines(), missing[2]]
    pairs = zip(*lines, strict=False)
    line = next(((a, b) for a, b in pairs if a != b), ("", ""))
    return (
        f"answers {foreign[0]} with {line[0].strip()!r} where a fresh value has {line[1].strip()!r}"
    )


def _attack(walk: Walk, send: Callable[[str], Any], item: Input, world, attacker) -> None:
    """Send every victim value, each next to a fresh value of the same shape."""
    before = db_snapshot()
    for label, value in world.values().items():
        fresh = missing_like(value)
        with one_moment():
            foreign, missing = send(value), send(fresh)
        where = f"{item} = victim's {label}"
        walk.check(
            answer(foreign, [value]) == answer(missing, [fresh]),
            f"{where}: {_difference(answer(foreign, [value]), answer(missing, [fresh]))}",
        )
        found = leaks(foreign, world.markers(), [value])
        walk.check(not found, f"{where}: shows the victim's data {found}")
    changed = db_changes(before, db_snapshot(), new_rows_of=attacker)
    walk.check(not changed, f"{item}: changed data {changed}")


def test_every_input_is_classified(org, owner):
    inputs = static_page_inputs() | runtime_page_inputs(client_for(owner), org) | api_inputs()
    unclassified = sorted(str(i) for i in inputs if input_class(i) is None)
    assert not unclassified, (
        "Classify these inputs in INPUTS in tests/test_isolation_ids.py (reference, search or "
        f"plain, with why): {unclassified}"
    )
    stale = set(INPUTS) - {i.name for i in inputs}
    assert not stale, f"No route reads these INPUTS any more; remove them: {sorted(stale)}"


def test_foreign_ids_in_page_bodies_and_query_strings(world, other_owner, other_org):
    intruder = client_for(other_owner)
    inputs = static_page_inputs() | runtime_page_inputs(intruder, other_org)
    attacked = _distinct({i for i in inputs if input_class(i) in (REFERENCE, SEARCH)})
    walk = Walk()
    for item in attacked:
        # The attacker's own slug and objects in the URL: only the input carries the victim.
        path = build_path(item.route, other_org.slug, other_org)
        body = page_valid_body(item.route, inputs)

        def send(value: str, item: Input = item, path: str = path, body=body) -> Any:
            if item.method == "GET":
                return walk.request(intruder, "GET", f"{path}?{urlencode({item.name: value})}")
            return walk.request(intruder, item.method, path, {**body, item.name: value})

        _attack(walk, send, item, world, other_org)
    walk.assert_clean()
    expected = {(i.route, i.method) for i in attacked}
    assert not walk.missing(expected), walk.missing(expected)
    names = {([part for part in i.route.split("/") if part][-1], i.name) for i in attacked}
    # The discovery still sees the inputs known to carry ids (a broken parser finds nothing).
    assert {("new", "submission_id"), ("sessions", "agent"), ("delete", "confirm")} <= names
    assert {("activity", "target"), ("export.csv", "target"), ("agents", "q")} <= names


def test_foreign_ids_in_api_query_strings_and_bodies(world, other_org):
    intruder = api_client(other_org)
    attacked = _distinct({i for i in api_inputs() if input_class(i) in (REFERENCE, SEARCH)})
    walk = Walk()
    for item in attacked:
        path = build_path(item.route, "", other_org)
        body = api_valid_body(item.route, item.method)

        def send(value: str, item: Input = item, path: str = path, body=body) -> Any:
            if item.method == "GET":
                query = urlencode({item.name: value})
                return walk.request(intruder, "GET", f"{path}?{query}", "", JSON)
            return walk.request(intruder, item.method, path, {**body, item.name: value}, JSON)

        _attack(walk, send, item, world, other_org)
    walk.assert_clean()
    expected = {(i.route, i.method) for i in attacked}
    assert not walk.missing(expected), walk.missing(expected)
    assert {"agent_id", "search", "target", "actor"} <= {i.name for i in attacked}


# --- Inputs no form or schema describes ---------------------------------------------------------


def test_another_organizations_idempotency_key_is_not_replayed(world, other_org):
    """Idempotency keys are per API key: the victim's key replays nothing for anyone else,
    whether the body is the victim's or another (no `idempotency_key_reused` conflict)."""
    victim, intruder = api_client(world.org), api_client(other_org)
    body = {"name": "walker idem", "prompt": API_SAMPLES["prompt"]}
    walk = Walk()
    before = db_snapshot()
    for attacker_body in (body, {**body, "name": "walker other body"}):
        key = str(uuid.uuid4())
        first = victim.post(
            "/api/v1/agents", body, content_type=JSON, headers={"Idempotency-Key": key}
        )
        assert first.status_code == 202, first.content
        before |= db_snapshot()  # the victim's own request may write
        fresh_key = missing_like(key)
        foreign, fresh = (
            walk.request(
                intruder,
                "POST",
                "/api/v1/agents",
                attacker_body,
                JSON,
                headers={"Idempotency-Key": k},
            )
            for k in (key, fresh_key)
        )
        assert answer(foreign, [key]) == answer(fresh, [fresh_key])
        assert foreign.status_code == 202 and "Idempotency-Replayed" not in foreign
        assert first.json()["id"] not in body_text(foreign)
    assert not db_changes(before, db_snapshot(), new_rows_of=other_org)


def test_webhook_receiver_never_touches_another_organizations_agents(
    world, other_org, django_capture_on_commit_callbacks
):
    """A delivery signed for the attacker's own receiver, naming the victim's agents (by code or
    id), is processed inside the attacker's organization only."""
    from portal.bithuman import webhooks
    from portal.models import BithumanConnection

    connection = BithumanConnection.objects.get(organization=other_org)
    connection.webhook_secret = "whsec_walker"
    connection.save()
    client = Client()
    path = f"/webhooks/bithuman/{connection.receiver_token}/"

    def deliver(field: str, value: str) -> Any:
        raw = json.dumps(
            {"event": "agent.ready", "id": uuid.uuid4().hex, "data": {field: value}}
        ).encode()
        headers = webhooks.delivery_headers_build(
            secret=connection.webhook_secret,
            raw_body=raw,
            event="agent.ready",
            delivery_id=uuid.uuid4().hex,
        )
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(path, raw, content_type=JSON, headers=headers)

    before = db_snapshot()
    for field in ("code", "agent_id"):
        for value in world.values().values():
            fresh = missing_like(value)
            foreign, missing = deliver(field, value), deliver(field, fresh)
            assert foreign.status_code == 200, foreign.content
            assert answer(foreign, [value]) == answer(missing, [fresh])
    changed = db_changes(before, db_snapshot(), new_rows_of=other_org)
    assert not changed, changed
    flying = world["flying_agent"]
    assert type(flying).objects.get(pk=flying.pk).next_poll_at == flying.next_poll_at
