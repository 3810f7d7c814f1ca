"""A 429 never counts as a failed attempt: a burst of generations on a small plan waits its turn
("queued") and every agent is submitted, against the sandbox's real token bucket."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from agents import queue, services
from agents.models import Agent, AgentStatus
from organizations import connections
from portal.bithuman.errors import RateLimitedError
from sandbox import services as sandbox_services
from sandbox.models import SandboxRateBucket
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)


def _create(member, name):
    return services.agent_create(
        actor=member,
        name=name,
        system_prompt="A cheerful host",
        model="expression-1",
        aspect_ratio="16:9",
        framing="portrait",
        transparency=False,
        image=services.MediaSource(),
        audio=services.MediaSource(),
    )


def test_twelve_agents_on_a_free_plan_wait_their_turn_and_none_fails(sandbox_api, org, member):
    connection = connections.connection_get(org=org)
    account = sandbox_services.sandbox_account_for_secret(secret=connection.sandbox_secret)
    sandbox_services.sandbox_account_configure(account=account, changes={"plan": "free"})

    agents = [_create(member, f"Agent {n}") for n in range(12)]  # the task runs eagerly

    assert Agent.objects.filter(status=AgentStatus.PROCESSING).count() == 4  # Free: 4 a minute
    waiting = list(Agent.objects.filter(status=AgentStatus.SUBMITTING).order_by("created_at"))
    assert len(waiting) == 8
    assert all(a.queued_until and a.submit_attempts == 0 for a in waiting)
    # Each waits for its own slot of the refill (15 s on Free), in the order they were made.
    turns = [a.queued_until for a in waiting]
    assert turns == sorted(turns) and turns[-1] - turns[0] >= timedelta(seconds=7 * 14)

    page = client_for(member).get(reverse("agent_detail", args=[org.slug, waiting[2].public_id]))
    assert "Queued" in page.content.decode() and "Number 3 in line" in page.content.decode()
    body = ApiClient(make_key(org)).get(f"/agents/{waiting[0].public_id}").json()
    assert body["status"] == "queued" and body["queued_until"]

    # Far more rounds than AGENT_SUBMIT_MAX_ATTEMPTS, each refused 429 for most of the line.
    rounds = 0
    while Agent.objects.filter(status=AgentStatus.SUBMITTING).exists():
        rounds += 1
        assert rounds <= 12
        # A refill of one token (15 s on Free), and every turn has come: bitHuman's Retry-After
        # too, which the portal holds the whole account to (agents.budgets).
        SandboxRateBucket.objects.filter(account=account, bucket="generate").update(tokens=1.0)
        cache.clear()
        Agent.objects.filter(status=AgentStatus.SUBMITTING).update(
            queued_until=timezone.now() - timedelta(seconds=1),
            created_at=timezone.now() - timedelta(minutes=5),
        )
        services.agents_submit_sweep()
    assert rounds >= settings.AGENT_SUBMIT_MAX_ATTEMPTS
    assert not Agent.objects.filter(status=AgentStatus.FAILED).exists()
    assert Agent.objects.filter(status=AgentStatus.PROCESSING).count() == len(agents)
    assert set(Agent.objects.values_list("queued_until", flat=True)) == {None}


def test_the_wait_honours_retry_after_then_the_reset_header():
    error = RateLimitedError(code="RATE_LIMITED", message="slow", http_status=429, retry_after=6)
    error.limit = 4
    assert queue.wait_seconds(error=error, ahead=0) == 6
    assert queue.wait_seconds(error=error, ahead=2) == 6 + 2 * 15
    bare = RateLimitedError(code="RATE_LIMITED", message="slow", http_status=429)
    bare.reset_at = timezone.now().timestamp() + 9
    assert 8 <= queue.wait_seconds(error=bare, ahead=0) <= 9
    assert queue.wait_seconds(error=RateLimitedError(code="X", message="y"), ahead=0) == 15
