"""bitHuman's webhook deliveries to the portal (`agent.ready`, `agent.failed`): verified by HMAC
signature against the organization's receiver, recorded once (by the signed body's `id`), then
processed by a task that makes the poller refresh that agent now. Inbound webhooks only concern
agents, so they live here; outbound webhooks (ours, to customers) are activity's."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent
from organizations.connections import WEBHOOK_EVENTS
from portal.bithuman import webhooks
from portal.errors import ApplicationError
from portal.models import BithumanConnection, WebhookDelivery


@dataclass(frozen=True)
class WebhookReceived:
    delivery: WebhookDelivery
    duplicate: bool


def webhook_receive(
    *, receiver_token: str, raw_body: bytes, headers: Mapping[str, str]
) -> WebhookReceived:
    """Verify and record a bitHuman delivery. Raises ApplicationError for anything not genuine."""
    connection = (
        BithumanConnection.objects.select_related("organization")
        .filter(receiver_token=receiver_token)
        .first()
    )
    if connection is None or not connection.webhook_secret:
        raise ApplicationError("Unknown webhook endpoint.")
    try:
        webhooks.signature_verify(
            secret=connection.webhook_secret, raw_body=raw_body, headers=headers
        )
    except webhooks.WebhookSignatureError as error:
        raise ApplicationError(f"Bad signature: {error}") from None
    payload = _delivery_parse(raw_body)
    event, delivery_id = payload["event"], payload["id"]
    delivery, created = WebhookDelivery.objects.get_or_create(
        organization=connection.organization,
        delivery_id=delivery_id,
        defaults={"event": event, "payload": payload},
    )
    return WebhookReceived(delivery=delivery, duplicate=not created)


WEBHOOK_BODY_MAX_DEPTH = 32


def _json_constant_refuse(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _delivery_parse(raw_body: bytes) -> dict[str, Any]:
    """The signed body as a delivery, or ApplicationError (a 400) for anything we could not
    store or use: not UTF-8 JSON, NaN/Infinity, nesting deeper than WEBHOOK_BODY_MAX_DEPTH (a
    100,000-deep array would exhaust the parser's recursion), a NUL or a lone surrogate in any
    string or key (PostgreSQL refuses both), or an `id`/`event`/`data` of the wrong type. The
    deduplication key is the body's own `id`, which the signature covers; the
    `X-BitHuman-Delivery` header is not signed, so it is never trusted."""
    malformed = ApplicationError("Malformed delivery body.")
    try:
        payload = json.loads(raw_body, parse_constant=_json_constant_refuse)
    except (ValueError, RecursionError, TypeError):
        raise malformed from None
    if not isinstance(payload, dict):
        raise malformed
    delivery_id, event = payload.get("id"), payload.get("event")
    if not isinstance(delivery_id, str) or not 0 < len(delivery_id) <= 100:
        raise malformed
    if not isinstance(event, str) or not 0 < len(event) <= 50:
        raise malformed
    if not isinstance(payload.get("data", {}), dict):
        raise malformed
    if not _json_storable(payload):
        raise malformed
    return payload


def _json_storable(value: object) -> bool:
    """Whether PostgreSQL's jsonb can hold this parsed JSON: no NUL, no lone surrogate (in
    values and keys), at most WEBHOOK_BODY_MAX_DEPTH levels. Iterative: no recursion."""
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return False
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict | list):
            if depth >= WEBHOOK_BODY_MAX_DEPTH:
                return False
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return True


def webhook_delivery_process(*, delivery_id: int) -> None:
    """Act on a delivery: `agent.ready` / `agent.failed` make the poller refresh that agent now
    (the status itself always comes from a poll, which the compare-and-set write orders), then
    mark the delivery handled. The agent is looked up inside the delivery's organization only."""
    delivery = WebhookDelivery.objects.filter(pk=delivery_id, processed_at__isnull=True).first()
    if delivery is None:
        return
    if delivery.event in WEBHOOK_EVENTS:
        data = delivery.payload.get("data") if isinstance(delivery.payload, dict) else None
        if not isinstance(data, dict):
            data = {}
        code = str(data.get("code") or data.get("agent_id") or "")
        if code:
            agent = Agent.objects.for_org(delivery.organization).filter(code=code).first()
            if agent is not None:
                agent_services.agent_refresh_now(agent=agent)
    WebhookDelivery.objects.filter(pk=delivery_id, processed_at__isnull=True).update(
        processed_at=timezone.now()
    )
