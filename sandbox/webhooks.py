"""Sandbox webhooks: subscriptions, signed deliveries (sandbox.signing) with retries, pings."""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import secrets
import socket
import time
from urllib.parse import urlsplit

import httpx
from django.db import transaction
from django.utils import timezone

from sandbox import conf, schemas, selectors, signing
from sandbox.errors import invalid
from sandbox.models import (
    SandboxAccount,
    SandboxAgent,
    SandboxWebhook,
    SandboxWebhookDelivery,
)

SECRET_PREFIX = "sbx_"  # noqa: S105 (a prefix, not a secret)
# A Test-mode secret: the prefix and 40 URL-safe characters (30 random bytes), the form both this
# command and the portal issue. The portal mints its organizations' secrets itself and never calls
# the sandbox: the sandbox opens an account the first time a secret of this form authenticates.
SECRET_FORM = re.compile(r"sbx_[A-Za-z0-9_-]{40}")
_random = secrets.SystemRandom()


# --- Webhooks -----------------------------------------------------------------------------------


def _host_is_local(host: str) -> bool:
    """Does the host name a loopback, private, link-local or otherwise non-public address?"""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False  # unresolvable: the delivery fails on its own
    for address in addresses:
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])
        if not ip.is_global:
            return True
    return False


def webhook_create(*, account: SandboxAccount, data: schemas.WebhookIn) -> SandboxWebhook:
    if not conf.webhook_allow_local():
        parts = urlsplit(data.url)
        if parts.scheme != "https":
            raise invalid("Field 'url' must be an HTTPS URL")
        host = parts.hostname or ""
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise invalid("Field 'url' must be a public HTTPS endpoint")
        try:
            if not ipaddress.ip_address(host).is_global:
                raise invalid("Field 'url' must be a public HTTPS endpoint")
        except ValueError:
            pass  # a host name: checked again at delivery time
    return SandboxWebhook.objects.create(
        account=account,
        url=data.url,
        events=data.events,
        description=data.description or "",
        secret="whsec_" + secrets.token_hex(24),
    )


def webhook_delete(*, account: SandboxAccount, webhook_id: str) -> None:
    selectors.webhook_owned(account=account, webhook_id=webhook_id).delete()


def webhook_event_enqueue(*, agent: SandboxAgent, event: str) -> list[str]:
    """Record one delivery per subscribed endpoint and send each after the commit."""
    from sandbox import tasks  # tasks import this module

    delivery_ids = []
    for webhook in SandboxWebhook.objects.filter(account_id=agent.account_id, active=True):
        if webhook.events and event not in webhook.events:
            continue
        event_id = "evt_" + secrets.token_hex(12)
        body = json.dumps(
            {
                "id": event_id,
                "event": event,
                "created": int(time.time()),
                "data": {"agent_id": agent.code, "code": agent.code},
            }
        )
        delivery = SandboxWebhookDelivery.objects.create(
            webhook=webhook, event_id=event_id, event_type=event, body=body
        )
        delivery_ids.append(str(delivery.id))
    for delivery_id in delivery_ids:
        transaction.on_commit(
            functools.partial(tasks.sandbox_webhook_deliver.delay, delivery_id), robust=True
        )
    return delivery_ids


def _webhook_post(
    *, webhook: SandboxWebhook, delivery: SandboxWebhookDelivery
) -> tuple[int | None, str]:
    """One signed POST: (the endpoint's status or None, an error text)."""
    raw = delivery.body.encode()
    if not conf.webhook_allow_local() and _host_is_local(urlsplit(webhook.url).hostname or ""):
        return None, "Blocked: the endpoint resolves to a non-public address"
    headers = signing.delivery_headers(
        secret=webhook.secret, raw_body=raw, event=delivery.event_type, event_id=delivery.event_id
    )
    headers |= {"Content-Type": "application/json", "User-Agent": "bitHuman-Webhooks/1 (sandbox)"}
    try:
        with httpx.Client(timeout=conf.webhook_timeout(), follow_redirects=False) as client:
            response = client.post(webhook.url, content=raw, headers=headers)
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}"[:500]
    ok = 200 <= response.status_code < 300
    return response.status_code, "" if ok else f"HTTP {response.status_code}"


def webhook_delivery_attempt(*, delivery_id: str) -> float | None:
    """Make one attempt; return seconds until the next one, or None when there is none."""
    delivery = (
        SandboxWebhookDelivery.objects.select_related("webhook")
        .filter(pk=delivery_id, delivered=False)
        .first()
    )
    if delivery is None or not delivery.webhook.active:
        return None
    status_code, error = _webhook_post(webhook=delivery.webhook, delivery=delivery)
    attempts = delivery.attempts + 1
    delivered = status_code is not None and 200 <= status_code < 300
    SandboxWebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=attempts,
        status_code=status_code,
        delivered=delivered,
        last_error=error,
        updated_at=timezone.now(),
    )
    if delivered or attempts > conf.webhook_max_retries():
        return None
    return conf.webhook_backoff() * 2 ** (attempts - 1)


def webhook_ping(*, account: SandboxAccount, webhook_id: str) -> SandboxWebhookDelivery:
    """Send a one-off `ping` event now (one attempt) and return its delivery record."""
    webhook = selectors.webhook_owned(account=account, webhook_id=webhook_id)
    event_id = "evt_" + secrets.token_hex(12)
    body = json.dumps({"id": event_id, "event": "ping", "created": int(time.time()), "data": {}})
    delivery = SandboxWebhookDelivery.objects.create(
        webhook=webhook, event_id=event_id, event_type="ping", body=body
    )
    status_code, error = _webhook_post(webhook=webhook, delivery=delivery)
    delivery.attempts = 1
    delivery.status_code = status_code
    delivery.delivered = status_code is not None and 200 <= status_code < 300
    delivery.last_error = error
    delivery.updated_at = timezone.now()
    delivery.save()
    return delivery
