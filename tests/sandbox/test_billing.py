"""The sandbox's billing surface (api/billing.md) and an account's further API secrets
(api/api-keys.md), over real HTTP; every /v1 and /v2 answer is checked against the contract."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sandbox.models import SandboxRoom
from tests.sandbox.conftest import SandboxClient

pytestmark = pytest.mark.django_db(transaction=True)


def _user_id(client: SandboxClient) -> str:
    return client.get("/v1/me").json()["data"]["user_id"]


def test_credit_summaries_follow_generations_refunds_and_session_minutes(sandbox_client):
    client = sandbox_client(plan="pro", credits=3000)
    summary = client.get("/v2/credit-summaries").json()["data"]
    assert summary["balance"] == 3000.0 and summary["user_id"] == _user_id(client)
    assert summary["minutes_estimate"]["essence_2_max_cloud"] == 375  # 3000 / 8
    assert summary["minutes_estimate"]["essence_cloud"] == 1500  # an alias of Essence 1 (÷2)

    ready = client.ready_agent(model="expression-1")  # 250
    failed = client.generate(model="essence-2", image="https://example.invalid/404.png")
    client.advance(10_000)
    assert client.status(failed)["status"] == "failed"  # refunded: 500 back
    # Ten minutes in a room of the expression-1 agent: 4 credits a minute.
    started = timezone.now() - timedelta(minutes=10)
    room = SandboxRoom.objects.create(
        account=client.account,
        agent_id=client.account.agents.get(code=ready).pk,
        name="room-1",
        kind="embed",
        created_at=started,
        last_seen_at=timezone.now(),
        expires_at=timezone.now() + timedelta(minutes=1),
    )
    room.ended_at = started + timedelta(minutes=10)
    room.save()

    summary = client.get("/v2/credit-summaries", params={"user_id": "someone-else"}).json()
    assert summary["data"]["balance"] == 3000 - 250 - 40
    assert client.credits() == 3000 - 250 - 40  # /v1/me agrees

    usage = client.get("/v1/usage").json()
    assert usage["pagination"] == {"limit": 50, "offset": 0, "total": 4, "has_more": False}
    codes = [
        (row["pricing_code"], row["agent_code"], row["credits_change"]) for row in usage["data"]
    ]
    assert ("usage_agent_generation_expression_1", ready, 250) in codes
    assert ("usage_agent_generation_essence_2", failed, 500) in codes
    assert ("credit_refund_usage_agent_generation_essence_2", failed, 500) in codes
    assert ("usage_expression_1_model_cloud", ready, 40) in codes
    moments = [row["created_at"] for row in usage["data"]]
    assert moments == sorted(moments, reverse=True)  # newest first

    only = client.get("/v1/usage", params={"agent_code": ready, "limit": 1}).json()
    assert only["pagination"]["total"] == 2 and only["pagination"]["has_more"] is True
    later = (timezone.now() + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert client.get("/v1/usage", params={"start": later}).json()["data"] == []
    bad = client.get("/v1/usage", params={"start": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "VALIDATION_ERROR"
    assert client.get("/v1/usage", params={"limit": 201}).status_code == 400


def test_generation_the_balance_cannot_cover_is_refused_with_402(sandbox_client):
    client = sandbox_client(credits=300)
    response = client.post("/v1/agent/generate", json={"prompt": "x", "model": "essence-2"})
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "INSUFFICIENT_BALANCE"
    assert client.get("/v1/usage").json()["data"] == []  # nothing billed


def test_pricing_is_the_documented_schedule(api):
    by_model = api.get("/v1/pricing").json()["data"]["agent_generation"]["by_model"]
    assert by_model["expression-2"] == 2000 and by_model["essence-2"] == 500


def test_a_further_secret_is_the_same_account_and_shares_its_buckets(sandbox_client):
    first = sandbox_client(plan="free")
    user_id = _user_id(first)
    created = first.post(f"/v2/{user_id}/api-secrets", json={"alias": "second-org"})
    assert created.status_code == 200, created.text
    assert created.json()["alias"] == "second-org"
    second = SandboxClient(first.base_url, created.json()["secret"])
    try:
        assert _user_id(second) == user_id
        listed = second.get(f"/v2/{user_id}/api-secrets").json()
        assert [row["alias"] for row in listed["data"]] == ["default", "second-org"]
        assert created.json()["secret"] not in str(listed)  # masked
        value = second.get(f"/v2/{user_id}/api-secrets/second-org/get-value").json()
        assert value == {"value": created.json()["secret"]}
        again = first.post(f"/v2/{user_id}/api-secrets", json={"alias": "second-org"})
        assert again.status_code == 409

        # Free: 4 generations a minute for the account, whichever secret asks.
        assert [
            first.post("/v1/agent/generate", json={"prompt": "x"}).status_code for _ in range(2)
        ] == [200, 200]
        assert [
            second.post("/v1/agent/generate", json={"prompt": "x"}).status_code for _ in range(3)
        ] == [200, 200, 429]
        assert first.post("/v1/agent/generate", json={"prompt": "x"}).status_code == 429
        assert len(second.get("/v1/agents").json()["data"]) == 4  # one account's agents

        deleted = first.delete(f"/v2/{user_id}/api-secrets/second-org")
        assert deleted.json() == {
            "alias": "second-org",
            "message": "API secret deleted successfully",
        }
        refused = second.get("/v1/me")
        assert refused.status_code == 401  # denylisted: not a new account opened on first use
        assert first.get(f"/v2/{user_id}/api-secrets/second-org/get-value").status_code == 404
    finally:
        second.close()


def test_api_secrets_of_another_account_answer_404(sandbox_client):
    mine, theirs = sandbox_client(), sandbox_client()
    response = mine.post(f"/v2/{_user_id(theirs)}/api-secrets", json={"alias": "x"})
    assert response.status_code == 404
    assert mine.get(f"/v2/{_user_id(theirs)}/api-secrets").status_code == 404
