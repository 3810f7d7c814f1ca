"""Usage and credits (api/billing.md) through the Usage page and `GET /api/v1/usage`, against the
sandbox over HTTP in Test mode: spend by day, model and agent, balance and runway, the pre-check
before a generation, pricing per account, and tenant isolation (an account shared by two
organizations shows each only its own agents)."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone

from agents import selectors, usage
from agents.models import Agent, AgentStatus
from organizations import connections
from portal.models import BithumanConnection
from portal.tenancy import Role
from sandbox import schemas as sandbox_schemas
from sandbox import services as sandbox_services
from sandbox.models import SandboxAgent, SandboxRateBucket, SandboxRoom
from tests.agents.test_views import _form
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.factories import AgentFactory, MembershipFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _account(org, **changes):
    connection = connections.connection_get(org=org)
    account = sandbox_services.sandbox_account_for_secret(secret=connection.api_secret)
    if changes:
        sandbox_services.sandbox_account_configure(account=account, changes=changes)
    return account


def _generated(org, account, *, model, name, fail=False):
    """An agent bitHuman generated for the account (the sandbox charged it), in `org`."""
    body = {"prompt": "A friendly coach", "model": model}
    if fail:
        body["image"] = "https://example.invalid/404.png"  # fails early, then is refunded
    answer = sandbox_services.agent_generate(
        account=account, data=sandbox_schemas.generate_in(body), idempotency_key=None
    )
    code = json.loads(answer.body)["agent_id"]
    return AgentFactory(organization=org, name=name, model=model, code=code)


def _room(account, code, minutes):
    started = timezone.now() - timedelta(minutes=minutes)
    return SandboxRoom.objects.create(
        account=account,
        agent=SandboxAgent.objects.get(code=code),
        name=f"room-{code}",
        kind="embed",
        created_at=started,
        last_seen_at=timezone.now(),
        expires_at=timezone.now() + timedelta(minutes=1),
        ended_at=timezone.now(),
    )


def _second_org_on(account_org, owner_secret):
    """Another organization on a further secret of the same sandbox account (api/api-keys.md)."""
    base = connections.connection_get(org=account_org).base_url
    with httpx.Client(base_url=base, headers={"api-secret": owner_secret}, timeout=20) as http:
        user_id = http.get("/v1/me").json()["data"]["user_id"]
        secret = http.post(f"/v2/{user_id}/api-secrets", json={"alias": "globex"}).json()["secret"]
    other = MembershipFactory(role=Role.ADMIN)
    connection = connections.connection_get(org=other.organization)
    BithumanConnection.objects.filter(pk=connection.pk).update(sandbox_secret=secret)
    return other


@pytest.fixture
def spent(sandbox_api, org):
    """Acme's sandbox account: a ready expression-1 agent (250) with 10 live minutes (40), an
    essence-2 agent that failed and was refunded (500 back), and Globex, another organization
    on a second secret of the same account, with its own expression-2 agent (2000)."""
    account = _account(org, credits=5000, time_scale=0.0)
    coach = _generated(org, account, model="expression-1", name="Coach")
    broken = _generated(org, account, model="essence-2", name="Broken", fail=True)
    sandbox_services.sandbox_clock_advance(account=account, seconds=10_000)
    for agent in SandboxAgent.objects.filter(account=account):
        sandbox_services.agent_refresh(agent=agent)
    _room(account, coach.code, 10)
    globex = _second_org_on(org, connections.connection_get(org=org).api_secret)
    theirs = _generated(globex.organization, account, model="expression-2", name="Globex Star")
    return {
        "account": account,
        "coach": coach,
        "broken": broken,
        "globex": globex,
        "theirs": theirs,
    }


def test_the_usage_page_shows_spend_balance_and_runway_and_only_this_organizations_agents(
    spent, org, admin, member
):
    url = reverse("usage", args=[org.slug])
    assert client_for(member).get(url).status_code == 403  # admins and above
    page = client_for(admin).get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Test mode:" in html and "sandbox's own figures" in html
    report = page.context["report"]
    # 5000 - 250 - 500 + 500 (refund) - 2000 (Globex's) - 40 (minutes)
    assert report.balance == 2710
    assert report.org_spent == 250 + 40 + 500 - 500
    assert report.account_spent == 250 + 40 + 2000
    assert report.other_spent == 2000  # Globex's agent: counted for the account only
    assert report.runway_days == pytest.approx(2710 / (2290 / 30))
    rows = {row.agent.code: row for row in report.by_agent}
    assert rows[spent["coach"].code].generation == 250 and rows[spent["coach"].code].sessions == 40
    assert rows[spent["broken"].code].total == 0  # charged and refunded
    assert spent["theirs"].code not in rows
    assert "Globex Star" not in html and spent["theirs"].code not in html
    assert "Coach" in html and 'id="chart-usage-by-day"' in html
    assert report.by_model == {"expression-1": 290, "essence-2": 0}
    today = next(row for day, row in report.by_day if day == timezone.localdate())
    assert today == {"expression-1": 290, "essence-2": 0}

    # The other organization sees its own agent, the same account balance.
    theirs = client_for(spent["globex"]).get(
        reverse("usage", args=[spent["globex"].organization.slug])
    )
    other = theirs.context["report"]
    assert other.org_spent == 2000 and other.balance == 2710
    assert [row.agent.name for row in other.by_agent] == ["Globex Star"]
    assert "Coach" not in theirs.content.decode()


def test_the_usage_api_gives_the_same_figures_and_needs_its_scope(spent, org):
    body = ApiClient(make_key(org)).get("/usage", days=7).json()
    assert body["mode"] == "test" and body["days"] == 7
    assert body["balance"] == 2710 and body["organization_spent"] == 290
    assert body["account_spent"] == 2290 and body["usage_available"] is True
    assert body["minutes_estimate"]["expression_1_cloud"] == 2710 // 4
    by_agent = {row["code"]: row for row in body["by_agent"]}
    assert by_agent[spent["coach"].code]["total"] == 290
    assert spent["theirs"].code not in by_agent
    assert sum(day["credits"] for day in body["by_day"]) == 290 and len(body["by_day"]) == 7
    assert body["runway_days"] == round(2710 / (2290 / 7), 1)

    refused = ApiClient(make_key(org, scopes=["agents:read"])).get("/usage")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    bad = ApiClient(make_key(org)).get("/usage", days=12)
    assert bad.status_code == 422
    assert "7, 30, 90" in bad.json()["error"]["details"]["fields"]["days"][0]


def test_a_generation_the_balance_cannot_cover_is_refused_before_anything_is_billed(
    sandbox_api, org, member
):
    account = _account(org, credits=300)
    # The check uses the balance as last read (the new-agent page, the Usage page or API, the
    # dashboard): no request to bitHuman in front of each create.
    page = client_for(member).get(reverse("agent_new", args=[org.slug])).content.decode()
    assert "Sandbox balance (simulated): <strong>300 credits</strong>" in page
    response = client_for(member).post(
        reverse("agent_new", args=[org.slug]), _form(model="essence-2", name="Too dear")
    )
    assert response.status_code == 400
    errors = response.context["form"].errors["model"]
    assert "costs 500 credits" in errors[0] and "300" in errors[0]
    assert "Nothing was billed" in errors[0]
    assert not Agent.objects.exists()

    api = ApiClient(make_key(org)).post(
        "/agents", {"name": "Too dear", "prompt": "A coach", "model": "essence-2"}
    )
    assert api.status_code == 422
    assert api.json()["error"]["code"] == "insufficient_credits"
    assert "costs 500 credits" in api.json()["error"]["details"]["fields"]["model"][0]
    assert not Agent.objects.exists()
    account.refresh_from_db()
    assert account.credits == 300 and not SandboxAgent.objects.filter(account=account).exists()

    # A model the balance covers goes through (and is charged by bitHuman).
    ok = ApiClient(make_key(org)).post(
        "/agents", {"name": "Fine", "prompt": "A coach", "model": "expression-1"}
    )
    assert ok.status_code == 202
    assert Agent.objects.get().status == AgentStatus.PROCESSING
    account.refresh_from_db()
    assert account.credits == 50


def test_pricing_is_cached_per_account_never_across_organizations(sandbox_api, org, other_org):
    mine, theirs = _account(org), _account(other_org)
    assert selectors.model_costs(org=org)["expression-2"] == 2000
    assert not SandboxRateBucket.objects.filter(account=theirs).exists()
    selectors.model_costs(org=other_org)
    # The other organization's prices came from its own account, not from the first's cache.
    assert SandboxRateBucket.objects.filter(account=theirs, bucket="read").exists()
    before = SandboxRateBucket.objects.get(account=mine, bucket="read").tokens
    selectors.model_costs(org=org)  # cached for this account: no request
    assert SandboxRateBucket.objects.get(account=mine, bucket="read").tokens == before


def test_a_retry_the_balance_cannot_cover_is_refused_too(sandbox_api, org, member):
    _account(org, credits=100)
    assert usage.credit_summary(org=org) is not None  # the balance as last read
    failed = AgentFactory(organization=org, model="essence-2", status=AgentStatus.FAILED)
    response = client_for(member).post(
        reverse("agent_retry", args=[org.slug, failed.public_id]), follow=True
    )
    assert "costs 500 credits" in response.content.decode()
    assert Agent.objects.count() == 1  # no second attempt was made
    api = ApiClient(make_key(org)).post(f"/agents/{failed.public_id}/retry")
    assert api.status_code == 422 and api.json()["error"]["code"] == "insufficient_credits"
