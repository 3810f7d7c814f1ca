"""Data for the benchmarks, written in bulk straight to the database (runs in the runner process
after `stack.django_setup()`): organizations in Test mode, each with its own sandbox account, and
agents in flight that exist both in the portal and in the sandbox."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone

from agents import ratelimit
from agents.models import Agent, AgentStatus
from organizations import connections
from portal.models import Membership, Organization
from portal.tenancy import Role
from sandbox.models import SandboxAccount, SandboxAgent

_serial = iter(range(10**9))


@dataclass
class Tenant:
    org: Organization
    secret: str
    account: SandboxAccount


def tenant_create(*, plan: str = "enterprise", prefix: str = "bench") -> Tenant:
    """An organization in Test mode on its own sandbox account, whose plan the poller already
    knows (as it would after its first /v1/me)."""
    n = next(_serial)
    org = Organization.objects.create(
        name=f"{prefix} {n}", slug=f"{prefix}-{n}-{uuid.uuid4().hex[:6]}"
    )
    connection = connections.connection_get(org=org)
    secret = connection.api_secret
    from sandbox import services as sandbox_services

    account = sandbox_services.sandbox_account_for_secret(secret=secret)
    if account is None:
        raise RuntimeError("The portal issued a Test-mode secret the sandbox does not accept")
    SandboxAccount.objects.filter(pk=account.pk).update(plan=plan, credits=10**9)
    ratelimit.plan_remember(key=ratelimit.account_key(secret), plan=plan)
    return Tenant(org=org, secret=secret, account=account)


def _code(n: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    middle = letters[n // 100 % 26] + letters[n // 2600 % 26] + letters[n // 67600 % 26]
    return f"A{n % 100:02d}{middle}{n % 10000:04d}"


_next_code: list[int] = []


def _codes(count: int) -> list[str]:
    """Fresh sandbox codes (numbered after the agents already there, so runs can add more)."""
    if not _next_code:
        _next_code.append(SandboxAgent.objects.count() + 1)
    first = _next_code[0]
    _next_code[0] += count
    return [_code(n) for n in range(first, first + count)]


def agents_create(
    *,
    tenant: Tenant,
    count: int,
    ready_in: list[float] | None = None,
    due_at: datetime | None = None,
    model: str = "essence-1",
) -> list[Agent]:
    """`count` in-flight agents of the tenant, due for a poll at `due_at` (default now).

    In the sandbox each runs in real time (time scale 1); `ready_in` gives each agent's seconds
    until ready (default: an hour, so it stays in flight while measured).
    """
    now = timezone.now()
    codes = _codes(count)
    durations = ready_in or [3600.0] * count
    SandboxAgent.objects.bulk_create(
        SandboxAgent(
            account=tenant.account,
            code=code,
            name=f"Bench {code}",
            model="expression-1",
            duration_seconds=duration,
            time_scale=1.0,
            created_at=now,
            updated_at=now,
        )
        for code, duration in zip(codes, durations, strict=True)
    )
    return Agent.objects.bulk_create(
        Agent(
            organization=tenant.org,
            name=f"Bench {code}",
            model=model,
            code=code,
            status=AgentStatus.PROCESSING,
            submitted_at=now,
            created_at=now,
            updated_at=now,
            next_poll_at=due_at or now,
        )
        for code in codes
    )


def agents_park() -> None:
    """Take every in-flight agent out of the poller's way (between benchmarks), and its
    sandbox generation out of the sandbox's own advance loop (beat's sandbox-advance walks every
    unfinished generation each 5 s: 16,000 left over from the poller benchmark kept the worker's
    processes busy through the benchmarks after it)."""
    now = timezone.now()
    Agent.objects.exclude(status__in=[AgentStatus.READY, AgentStatus.FAILED]).update(
        next_poll_at=now + timedelta(days=365), lease_until=None
    )
    SandboxAgent.objects.filter(finished_at__isnull=True).update(finished_at=now)


def owner_session(*, org: Organization) -> tuple[str, str]:
    """A logged-in owner of the organization: (cookie name, session key) for load tools."""
    from django.conf import settings

    user = get_user_model().objects.create_user(
        email=f"owner-{uuid.uuid4().hex[:8]}@bench.invalid", password=None
    )
    Membership.objects.create(organization=org, user=user, role=Role.OWNER)
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "portal.backends.EmailBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    return settings.SESSION_COOKIE_NAME, session.session_key or ""


# --- Live-mode tenants on the stand-in (bench/standin.py) ----------------------------------------


def standin_tenant_create(*, prefix: str = "standin") -> Organization:
    """An organization in Live mode with its own secret: the processes that poll it are started
    with BITHUMAN_API_URL pointing at the stand-in. Enterprise plan, known to the poller."""
    from portal.models import ConnectionMode

    n = next(_serial)
    org = Organization.objects.create(
        name=f"{prefix} {n}", slug=f"{prefix}-{n}-{uuid.uuid4().hex[:6]}"
    )
    connection = connections.connection_get(org=org)
    connection.mode = ConnectionMode.LIVE
    connection.live_secret = f"standin-{n}-{uuid.uuid4().hex}"
    connection.save(update_fields=["mode", "live_secret"])
    ratelimit.plan_remember(key=ratelimit.account_key(connection.live_secret), plan="enterprise")
    return org


def standin_agents_create(*, org: Organization, count: int) -> list[Agent]:
    """`count` generating agents of `org`, due now (the stand-in answers any code)."""
    now = timezone.now()
    return Agent.objects.bulk_create(
        Agent(
            organization=org,
            name=f"Bench {code}",
            model="essence-1",
            code=code,
            status=AgentStatus.PROCESSING,
            submitted_at=now,
            created_at=now,
            updated_at=now,
            next_poll_at=now,
        )
        for code in (f"S{uuid.uuid4().hex[:9].upper()}" for _ in range(count))
    )
