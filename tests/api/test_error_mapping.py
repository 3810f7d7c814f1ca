"""One error mapping: a domain error's kind decides the API's answer (portal.apisupport
api_error_for, installed once in interfaces/api.py), whatever operation let it through. One
test per kind through a real operation, the table itself, and the operations' shape."""

import ast
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.utils import timezone

from agents.models import AgentStatus
from organizations import connections
from portal.apisupport import api_error_for
from portal.bithuman import errors as bh_errors
from portal.errors import (
    ApplicationError,
    Conflict,
    ErrorKind,
    Forbidden,
    NotFound,
    RateLimited,
    UpstreamFailed,
    UpstreamRefused,
    upstream_failure,
)
from tests.api.test_agents_api import _envelope
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


class _RefusingClient:
    """A bitHuman client whose every call fails with `error`."""

    def __init__(self, error: bh_errors.BithumanError):
        self.error = error

    def __getattr__(self, name):
        def call(**kwargs):
            raise self.error

        return call


@pytest.fixture
def upstream(monkeypatch):
    """Make bitHuman answer with the given error, for every service that asks it."""

    def refuse(error: bh_errors.BithumanError) -> None:
        @contextmanager
        def client_for(**kwargs):
            yield _RefusingClient(error)

        monkeypatch.setattr(connections, "client_for", client_for)

    return refuse


def _ready(org, code="A42"):
    return AgentFactory(organization=org, status=AgentStatus.READY, code=code, system_prompt="Hi")


# --- The table ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "code", "details"),
    [
        (
            ApplicationError("Give it a name.", field="name"),
            422,
            "validation_error",
            {"fields": {"name": ["Give it a name."]}},
        ),
        (ApplicationError("Not like this."), 422, "validation_error", {}),
        (NotFound(), 404, "not_found", {}),
        (NotFound("No such session.", field="x"), 404, "not_found", {}),
        (Conflict("Not yet."), 409, "conflict", {}),
        (Conflict("Not ready.", code="agent_not_ready"), 409, "agent_not_ready", {}),
        (
            Conflict("Ended.", field="message"),
            409,
            "conflict",
            {"fields": {"message": ["Ended."]}},
        ),
        (Forbidden("No."), 403, "forbidden", {}),
        (
            UpstreamRefused("bitHuman: no.", extra={"upstream_status": 400}),
            409,
            "upstream_rejected",
            {"upstream_status": 400},
        ),
        (
            UpstreamFailed("bitHuman: down.", extra={"upstream_status": 503}),
            502,
            "upstream_error",
            {"upstream_status": 503},
        ),
        (RateLimited("Too many.", retry_after=2.2), 429, "rate_limited", {"retry_after": 3}),
    ],
)
def test_each_kind_has_one_status_code_and_details(error, status, code, details):
    mapped = api_error_for(error)
    assert (mapped.status, mapped.code, mapped.details) == (status, code, details)
    if status == 429:
        assert mapped.headers == {"Retry-After": "3"}


def test_plain_application_error_is_invalid_and_kinds_are_pages_exceptions_too():
    from django.core.exceptions import PermissionDenied
    from django.http import Http404

    assert ApplicationError("x").kind == ErrorKind.INVALID
    assert isinstance(NotFound(), Http404)  # a page that does not catch it answers 404
    assert isinstance(Forbidden("x"), PermissionDenied)  # ... or 403


@pytest.mark.parametrize(
    ("status", "kind", "cls"),
    [
        (400, ErrorKind.UPSTREAM_REFUSED, bh_errors.ValidationError),
        (402, ErrorKind.UPSTREAM_REFUSED, bh_errors.InsufficientCreditsError),
        (429, ErrorKind.RATE_LIMITED, bh_errors.RateLimitedError),
        (500, ErrorKind.UPSTREAM_FAILED, bh_errors.UpstreamError),
        (None, ErrorKind.UPSTREAM_FAILED, bh_errors.MalformedResponseError),
    ],
)
def test_a_bithuman_error_becomes_the_domain_error_of_its_kind(status, kind, cls):
    error = upstream_failure(cls(code="X", message="m", http_status=status), "Said no.")
    assert error.kind == kind
    assert error.extra["upstream_status"] == status


# --- Through the operations ---------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [" ", "\n"])
def test_invalid_a_blank_prompt_is_422_with_the_field(org, api, prompt):
    agent = _ready(org)
    error = _envelope(
        api.patch(f"/agents/{agent.public_id}", {"system_prompt": prompt}), 422, "validation_error"
    )
    assert error["details"] == {"fields": {"system_prompt": ["The prompt cannot be empty."]}}


def test_not_found_a_foreign_a_missing_and_a_malformed_id_answer_alike(org, other_org, api):
    foreign = _ready(other_org)
    archived = AgentFactory(organization=org, status=AgentStatus.READY)
    archived.archived_at = timezone.now()
    archived.save(update_fields=["archived_at"])
    answers = set()
    for agent_id in [
        foreign.public_id,
        archived.public_id,
        "00000000-0000-0000-0000-000000000000",
        "not-a-uuid",
    ]:
        for response in [
            api.get(f"/agents/{agent_id}"),
            api.patch(f"/agents/{agent_id}", {"system_prompt": "Hello"}),
            api.post(f"/agents/{agent_id}/sessions"),
            api.get(f"/sessions/{agent_id}"),
        ]:
            _envelope(response, 404, "not_found")
            answers.add(response.content)
    assert len(answers) == 1


def test_conflict_codes_come_from_the_services(org, api):
    generating = AgentFactory(organization=org, status=AgentStatus.GENERATING)
    _envelope(
        api.patch(f"/agents/{generating.public_id}", {"system_prompt": "Hello"}),
        409,
        "agent_not_ready",
    )
    _envelope(api.post(f"/agents/{generating.public_id}/sessions"), 409, "agent_not_ready")
    _envelope(api.post(f"/agents/{generating.public_id}/retry"), 409, "agent_not_failed")


def test_forbidden_a_suspended_organization(org, api):
    org.suspended_at = timezone.now()
    org.save(update_fields=["suspended_at"])
    _envelope(api.get("/agents"), 403, "organization_suspended")


def test_upstream_refused_is_409_with_bithumans_status(org, api, upstream):
    agent = _ready(org)
    upstream(bh_errors.ValidationError(code="BAD", message="Too long", http_status=400))
    error = _envelope(
        api.patch(f"/agents/{agent.public_id}", {"system_prompt": "Hello"}),
        409,
        "upstream_rejected",
    )
    assert error["details"]["upstream_status"] == 400
    assert "system_prompt" in error["details"]["fields"]
    error = _envelope(api.post(f"/agents/{agent.public_id}/sessions"), 409, "upstream_rejected")
    assert error["details"] == {"upstream_status": 400}


def test_upstream_failed_is_502(org, api, upstream):
    agent = _ready(org)
    upstream(bh_errors.UpstreamError(code="INTERNAL_ERROR", message="Oops", http_status=500))
    error = _envelope(api.delete(f"/agents/{agent.public_id}"), 502, "upstream_error")
    assert error["details"] == {"upstream_status": 500}
    _envelope(api.post(f"/agents/{agent.public_id}/sessions"), 502, "upstream_error")


def test_rate_limited_is_429_with_retry_after_also_when_starting_a_session(org, api, upstream):
    """Starting a session used to answer every bitHuman refusal as 409 conflict, a 429 too."""
    agent = _ready(org)
    upstream(
        bh_errors.RateLimitedError(
            code="RATE_LIMITED", message="Slow", http_status=429, retry_after=6.5
        )
    )
    for response in [
        api.post(f"/agents/{agent.public_id}/sessions"),
        api.patch(f"/agents/{agent.public_id}", {"system_prompt": "Hello"}),
    ]:
        error = _envelope(response, 429, "rate_limited")
        assert error["details"] == {"retry_after": 7}
        assert response["Retry-After"] == "7"


# --- The operations' shape ----------------------------------------------------------------------


def _caught_names(handler: ast.ExceptHandler) -> set[str]:
    node = handler.type
    nodes = node.elts if isinstance(node, ast.Tuple) else [node] if node else []
    return {n.attr if isinstance(n, ast.Attribute) else getattr(n, "id", "") for n in nodes}


def test_no_api_operation_catches_a_domain_error():
    """Operations call the services and let domain errors through to the one handler; a catch
    here would pick a status again (the bug this mapping removed)."""
    domain = {
        "ApplicationError",
        "NotFound",
        "Conflict",
        "Forbidden",
        "RateLimited",
        "UpstreamRefused",
        "UpstreamFailed",
        "OrganizationSuspended",
    }
    modules = sorted(ROOT.glob("*/api.py"))
    assert {path.parent.name for path in modules} >= {"agents", "sessions", "activity"}
    for path in modules:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler):
                assert not _caught_names(node) & domain, f"{path}:{node.lineno}"


# --- One access function, one role check --------------------------------------------------------


def test_tenant_get_answers_not_found_alike(org, other_org):
    from agents import selectors

    own = _ready(org)
    foreign = _ready(other_org, code="A43")  # one bitHuman agent is in one organization
    assert selectors.agent_get(org=org, public_id=str(own.public_id)) == own
    for public_id in [foreign.public_id, str(foreign.public_id), "nope", ""]:
        with pytest.raises(NotFound) as caught:
            selectors.agent_get(org=org, public_id=public_id)
        assert caught.value.message == "Not found."


def test_pages_answer_404_for_a_foreign_object_like_a_missing_one(org, other_org):
    from django.urls import reverse

    from tests.conftest import client_for
    from tests.factories import MembershipFactory

    member = MembershipFactory(organization=org, role="member")
    browser = client_for(member)
    foreign = _ready(other_org)
    for agent_id in [foreign.public_id, "00000000-0000-0000-0000-000000000000"]:
        response = browser.get(reverse("agent_detail", args=[org.slug, agent_id]))
        assert response.status_code == 404


def test_one_role_check_raises_forbidden_with_the_action(org):
    from portal.tenancy import Role, role_require
    from tests.factories import MembershipFactory

    viewer = MembershipFactory(organization=org, role=Role.VIEWER)
    with pytest.raises(Forbidden, match="Only members and above can delete agents"):
        role_require(viewer, Role.MEMBER, "delete agents")
    with pytest.raises(Forbidden, match="Only owners can rename"):
        role_require(viewer, Role.OWNER, "rename the organization")
    role_require(viewer, Role.VIEWER, "read")  # enough: nothing raised
    agent = _ready(org)
    from agents import services

    with pytest.raises(Forbidden):
        services.agent_archive(actor=viewer, agent=agent)
