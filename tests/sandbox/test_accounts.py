"""Sandbox accounts: authentication errors, /v1/validate, /v1/me, /v1/pricing, the command."""

import io
import secrets

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from sandbox import selectors, services, webhooks
from sandbox.errors import SandboxError
from sandbox.models import SandboxAccount

pytestmark = pytest.mark.django_db(transaction=True)

AUTHENTICATED = [
    ("POST", "/v1/agent/generate", {"prompt": "x"}),
    ("GET", "/v1/agent/status/A12BCD3456", None),
    ("GET", "/v1/agent/A12BCD3456", None),
    ("POST", "/v1/agent/A12BCD3456", {"system_prompt": "x"}),
    ("DELETE", "/v1/agent/A12BCD3456", None),
    ("GET", "/v1/agents", None),
    ("POST", "/v1/agent/A12BCD3456/speak", {"message": "hi"}),
    ("POST", "/v1/agent/A12BCD3456/add-context", {"context": "x"}),
    ("POST", "/v1/embed-tokens/request", {"agent_id": "A12BCD3456", "fingerprint": "ab"}),
    ("POST", "/v1/runtime-tokens/request", {}),
    ("GET", "/v1/me", None),
    ("GET", "/v1/pricing", None),
    ("GET", "/v1/webhooks", None),
    ("POST", "/v1/webhooks", {"url": "https://example.com/hook"}),
    ("DELETE", "/v1/webhooks/1de0c020-9d5e-4f8b-a1c2-3d4e5f607182", None),
]


@pytest.mark.parametrize(("method", "path", "body"), AUTHENTICATED)
def test_missing_secret_is_missing_auth(anonymous, method, path, body):
    response = anonymous.request(method, path, json=body)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "MISSING_AUTH"


@pytest.mark.parametrize(("method", "path", "body"), AUTHENTICATED)
def test_wrong_secret_is_unauthorized(anonymous, method, path, body):
    headers = {"api-secret": "sbx_not-a-real-secret"}
    response = anonymous.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "UNAUTHORIZED",
        "message": "Invalid API secret",
        "httpStatus": 401,
    }


def test_suspended_account(sandbox_client):
    client = sandbox_client()
    client.configure(suspended=True)
    response = client.get("/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "ACCOUNT_SUSPENDED"
    assert client.post("/v1/validate").json() == {"valid": False}


def test_validate_always_answers_200(api, anonymous):
    assert api.post("/v1/validate").json() == {"valid": True}
    assert anonymous.post("/v1/validate").json() == {"valid": False}
    wrong = anonymous.post("/v1/validate", headers={"api-secret": "nope"})
    assert (wrong.status_code, wrong.json()) == (200, {"valid": False})


def test_me_reports_plan_and_balance(sandbox_client):
    client = sandbox_client(plan="creator", credits=1234)
    data = client.get("/v1/me").json()["data"]
    assert data["plan"] == "creator"
    assert data["plan_code"] == "membership_creator"
    assert data["credit_balance"] == 1234
    assert data["account_status"] == "active"
    assert data["user_id"] == str(client.account.public_id)


def test_pricing_lists_every_model(api):
    body = api.get("/v1/pricing").json()
    assert body["success"] is True
    by_model = body["data"]["agent_generation"]["by_model"]
    assert by_model["expression-1"] == 250
    assert by_model["essence-2"] == 500
    assert by_model["expression-2"] == 2000


def test_account_create_service_returns_the_secret_once():
    account, secret = services.sandbox_account_create(plan="business", credits=42, label="acme")
    assert secret.startswith("sbx_")
    assert len(secret) > 30
    assert account.plan == "business"
    assert account.credits == 42
    assert account.secret_prefix == secret[:8]
    assert secret not in account.secret_hash  # stored hashed
    assert selectors.account_by_secret(secret=secret) == account


def test_account_create_service_defaults_come_from_settings(settings):
    settings.SANDBOX_DEFAULT_PLAN = "free"
    settings.SANDBOX_DEFAULT_CREDITS = 77
    account, _ = services.sandbox_account_create()
    assert (account.plan, account.credits) == ("free", 77)
    with pytest.raises(SandboxError):
        services.sandbox_account_create(plan="platinum")


def test_command_prints_only_the_secret(live_server):
    out = io.StringIO()
    call_command("sandbox_account", "--plan", "free", "--credits", "500", stdout=out)
    secret = out.getvalue().strip()
    assert secret.startswith("sbx_")
    assert "\n" not in secret
    account = selectors.account_by_secret(secret=secret)
    assert (account.plan, account.credits) == ("free", 500)


def test_command_sets_knobs_and_rejects_bad_values():
    out = io.StringIO()
    call_command("sandbox_account", "--latency-ms", "5", "--time-scale", "100", stdout=out)
    account = selectors.account_by_secret(secret=out.getvalue().strip())
    assert (account.latency_ms, account.time_scale, account.plan) == (5, 100.0, "pro")
    before = SandboxAccount.objects.count()
    with pytest.raises(CommandError):
        call_command("sandbox_account", "--plan", "platinum", stdout=io.StringIO())
    with pytest.raises(CommandError, match="error_rate"):
        call_command("sandbox_account", "--error-rate", "3", stdout=io.StringIO())
    assert SandboxAccount.objects.count() == before  # nothing half-created


def test_command_secret_works_over_http(live_server):
    out = io.StringIO()
    call_command("sandbox_account", stdout=out)
    response = httpx.get(
        f"{live_server.url}/sandbox/v1/me", headers={"api-secret": out.getvalue().strip()}
    )
    assert response.status_code == 200


# --- Accounts opened on first use (the portal mints its organizations' Test-mode secrets) -------


def test_a_well_formed_secret_opens_an_account_on_first_use(anonymous, settings):
    settings.SANDBOX_DEFAULT_PLAN = "creator"
    settings.SANDBOX_DEFAULT_CREDITS = 321
    secret = webhooks.SECRET_PREFIX + secrets.token_urlsafe(30)
    assert services.secret_well_formed(secret)
    assert selectors.account_by_secret(secret=secret) is None
    headers = {"api-secret": secret}
    first = anonymous.get("/v1/me", headers=headers)
    assert first.status_code == 200, first.text
    data = first.json()["data"]
    assert (data["plan"], data["credit_balance"]) == ("creator", 321)
    again = anonymous.get("/v1/me", headers=headers).json()["data"]
    assert again["user_id"] == data["user_id"]  # the same account, not a second one
    account = SandboxAccount.objects.get(secret_hash=services.secret_hash(secret))
    assert account.secret_prefix == secret[:8] and secret not in account.secret_hash
    assert anonymous.post("/v1/validate", headers=headers).json() == {"valid": True}


@pytest.mark.parametrize(
    "secret",
    [
        "sbx_not-a-real-secret",  # too short
        "sbx_" + "a" * 39,
        "sbx_" + "a" * 41,
        "sbx_" + "a" * 39 + "!",  # not URL-safe base64
        "sk_" + "a" * 41,  # another prefix
        "SBX_" + "a" * 40,
    ],
)
def test_other_unknown_secrets_stay_unauthorized_and_open_nothing(anonymous, secret):
    before = SandboxAccount.objects.count()
    response = anonymous.get("/v1/me", headers={"api-secret": secret})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert anonymous.post("/v1/validate", headers={"api-secret": secret}).json() == {"valid": False}
    assert SandboxAccount.objects.count() == before


def test_account_for_secret_opens_once_and_keeps_issued_accounts():
    secret = webhooks.SECRET_PREFIX + secrets.token_urlsafe(30)
    opened = services.sandbox_account_for_secret(secret=secret)
    assert opened is not None and opened.label == "opened on first use"
    assert services.sandbox_account_for_secret(secret=secret) == opened
    issued, issued_secret = services.sandbox_account_create(plan="free", credits=5)
    assert services.secret_well_formed(issued_secret)
    assert services.sandbox_account_for_secret(secret=issued_secret) == issued
    assert services.sandbox_account_for_secret(secret="sbx_short") is None
