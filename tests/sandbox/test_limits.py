"""Rate limits (token buckets per account and bucket) and the fault-injection knobs."""

import threading
import time
from datetime import timedelta

import httpx
import pytest

from sandbox import catalog
from sandbox.models import SandboxRateBucket

pytestmark = pytest.mark.django_db(transaction=True)


def test_generate_bucket_answers_429_with_headers(sandbox_client):
    client = sandbox_client(plan="free")
    for remaining in (3, 2, 1, 0):
        response = client.post("/v1/agent/generate", json={"prompt": "x"})
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "4"
        assert response.headers["X-RateLimit-Remaining"] == str(remaining)
    response = client.post("/v1/agent/generate", json={"prompt": "x"})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "RATE_LIMITED"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 15  # 4 per minute: one token every 15 s
    assert response.headers["X-RateLimit-Limit"] == "4"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert int(response.headers["X-RateLimit-Reset"]) > time.time()
    assert client.credits() == 10_000 - 4 * 250  # the rejected call charged nothing
    # Buckets are separate: reads and writes still work.
    assert client.get("/v1/agents").status_code == 200
    assert client.get("/v1/me").headers["X-RateLimit-Limit"] == "120"


def test_write_bucket_covers_speak(sandbox_client):
    """Free: 30 writes a minute, refilled continuously (0.5 a second). Speak spends them until a
    429; on a slow machine the refill during the burst allows a few more (counted, not timed)."""
    client = sandbox_client(plan="free")
    started, statuses = time.monotonic(), []
    while len(statuses) < 100 and 429 not in statuses:
        statuses.append(
            client.post("/v1/agent/A12BCD3456/speak", json={"message": "hi"}).status_code
        )
    refilled = 0.5 * (time.monotonic() - started)
    assert statuses[-1] == 429
    assert set(statuses[:-1]) == {404}
    assert 30 <= len(statuses) - 1 <= 30 + refilled + 1


def test_each_plan_has_its_own_limits(sandbox_client):
    for plan, limits in catalog.RATE_LIMITS.items():
        client = sandbox_client(plan=plan)
        assert client.get("/v1/me").headers["X-RateLimit-Limit"] == str(limits["read"])


def test_buckets_refill(sandbox_client):
    client = sandbox_client(plan="free")
    for _ in range(4):
        client.generate()
    assert client.post("/v1/agent/generate", json={"prompt": "x"}).status_code == 429
    # 15 s later one token is back (the bucket's clock is moved back rather than waited for).
    bucket = SandboxRateBucket.objects.get(account=client.account, bucket="generate")
    bucket.refilled_at -= timedelta(seconds=16)
    bucket.save()
    assert client.post("/v1/agent/generate", json={"prompt": "x"}).status_code == 200


def test_concurrent_requests_share_one_exact_count(sandbox_client, live_server):
    client = sandbox_client(plan="free")
    statuses: list[int] = []

    def call() -> None:
        with httpx.Client(timeout=30) as http:
            response = http.post(
                f"{live_server.url}/sandbox/v1/agent/generate",
                json={"prompt": "x"},
                headers={"api-secret": client.secret},
            )
            statuses.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 4 + [429] * 6
    assert client.credits() == 10_000 - 4 * 250


def test_rate_limits_can_be_switched_off(sandbox_client, settings):
    settings.SANDBOX_RATE_LIMITS_ENABLED = False
    client = sandbox_client(plan="free")
    for _ in range(6):
        response = client.post("/v1/agent/generate", json={"prompt": "x"})
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response.headers


# --- Knobs --------------------------------------------------------------------------------------


def test_forced_429_knob(sandbox_client):
    client = sandbox_client(force_429_rate=1.0)
    response = client.get("/v1/agent/status/A12BCD3456")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "RATE_LIMITED"
    assert response.headers["Retry-After"] == "1"
    assert client.post("/v1/validate").json() == {"valid": True}  # validate is never faulted
    client.configure(force_429_rate=None)
    assert client.get("/v1/me").status_code == 200


def test_error_rate_knob(sandbox_client):
    client = sandbox_client(error_rate=1.0)
    response = client.post("/v1/agent/generate", json={"prompt": "x"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "NO_AVAILABLE_WORKERS"
    assert client.get("/v1/me").status_code == 503  # every API request is faulted
    client.configure(error_rate=0)
    assert client.credits() == 10_000  # the faulted generate charged nothing


def test_latency_knob(sandbox_client):
    client = sandbox_client(latency_ms=300)
    started = time.monotonic()
    assert client.get("/v1/me").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_global_settings_apply_to_every_account(sandbox_client, settings):
    client = sandbox_client()
    settings.SANDBOX_ERROR_RATE = 1.0
    assert client.get("/v1/me").status_code == 503
    settings.SANDBOX_ERROR_RATE = 0.0
    settings.SANDBOX_FORCE_429_RATE = 1.0
    settings.SANDBOX_FORCED_RETRY_AFTER = 7
    response = client.get("/v1/me")
    assert (response.status_code, response.headers["Retry-After"]) == (429, "7")
    client.configure(force_429_rate=0)  # the account's own knob wins over the setting
    assert client.get("/v1/me").status_code == 200


def test_partial_error_rate_fails_some_requests(sandbox_client):
    client = sandbox_client(error_rate=0.5, plan="enterprise")
    statuses = {client.get("/v1/pricing").status_code for _ in range(40)}
    assert statuses == {200, 503}


@pytest.mark.parametrize(
    "knobs",
    [{"error_rate": 2}, {"latency_ms": -1}, {"plan": "gold"}, {"credits": -5}, {"colour": "red"}],
)
def test_control_api_rejects_bad_knobs(api, knobs):
    response = api.post("/control/account", json=knobs)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_control_api_needs_the_secret(anonymous):
    assert anonymous.get("/control/account").status_code == 401
    assert anonymous.post("/control/clock", json={"advance_seconds": 5}).status_code == 401
