"""The organization's bitHuman connection: Test mode (its sandbox secret) or Live (the
customer's encrypted secret, checked against /v1/me, with a webhook registered), and the client
for whichever is on."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from pydantic import BaseModel

from activity import services as activity_services
from portal import accountkeys
from portal.bithuman.client import BithumanClient
from portal.bithuman.errors import (
    MALFORMED_RESPONSE,
    AccountSuspendedError,
    BithumanError,
    MalformedResponseError,
)
from portal.bithuman.types import Account, WebhookEvent, WebhookWithSecret
from portal.errors import ApplicationError, upstream_failure
from portal.models import (
    BithumanConnection,
    ConnectionMode,
    Membership,
    Organization,
)
from portal.tenancy import Role, role_require

logger = logging.getLogger(__name__)


# --- bitHuman connection ------------------------------------------------------------------------

WEBHOOK_EVENTS: list[WebhookEvent] = ["agent.ready", "agent.failed"]
ACCOUNT_CACHE_SECONDS = 60


def connection_get(*, org: Organization) -> BithumanConnection:
    """The organization's connection; organizations made before connections existed get one."""
    connection = BithumanConnection.objects.filter(organization=org).first()
    return connection or connection_create(org=org)


def connection_create(*, org: Organization) -> BithumanConnection:
    """Every organization starts in Test mode with its own sandbox secret.

    The portal mints it (`sbx_` and 40 URL-safe characters) and never calls the sandbox: the
    sandbox opens the account, on its default plan and credits, the first time the secret
    reaches it over HTTP (README "The sandbox"). Nothing is opened while the sandbox is off.
    """
    secret = "sbx_" + secrets.token_urlsafe(30)
    connection, _created = BithumanConnection.objects.get_or_create(
        organization=org, defaults={"mode": ConnectionMode.TEST, "sandbox_secret": secret}
    )
    return connection


def client_for(
    *, connection: BithumanConnection, timeout: float | None = None, max_retries: int | None = None
) -> BithumanClient:
    """The client for the organization's current mode (its sandbox account or live secret)."""
    return BithumanClient(
        base_url=connection.base_url,
        api_secret=connection.api_secret,
        timeout=timeout,
        max_retries=max_retries,
    )


def connection_outcome_record(
    *, connection: BithumanConnection, error: BithumanError | None = None
) -> None:
    """What a call's outcome says about the account: ACCOUNT_SUSPENDED marks the organization
    (the banner on its pages), an answered call (`error` None, or any error bitHuman answered
    other than the suspension) clears the mark. Writes only when the mark changes."""
    org = connection.organization
    if isinstance(error, AccountSuspendedError):
        if org.bithuman_suspended_at is None:
            org.bithuman_suspended_at = timezone.now()
            org.bithuman_suspended_request_id = error.request_id or ""
            Organization.objects.filter(pk=org.pk).update(
                bithuman_suspended_at=org.bithuman_suspended_at,
                bithuman_suspended_request_id=org.bithuman_suspended_request_id,
            )
        return
    answered = error is None or error.http_status is not None
    if answered and org.bithuman_suspended_at is not None:
        suspension_clear(org=org)


def suspensions_record(*, outcomes: Iterable[tuple[int, object]], marked: set[int]) -> None:
    """connection_outcome_record for many organizations at once (the poller): `outcomes` pairs
    an organization with a call's result (an answer, a BithumanError, or something else: not
    sent), `marked` names those already marked. No statement unless a mark changes."""
    suspended: dict[int, str] = {}
    answered: set[int] = set()
    for org_id, result in outcomes:
        if isinstance(result, AccountSuspendedError):
            suspended.setdefault(org_id, result.request_id or "")
        elif isinstance(result, BaseModel) or (
            isinstance(result, BithumanError) and result.http_status is not None
        ):
            answered.add(org_id)
    now = timezone.now()
    for org_id, request_id in suspended.items():
        if org_id not in marked:
            Organization.objects.filter(pk=org_id, bithuman_suspended_at__isnull=True).update(
                bithuman_suspended_at=now, bithuman_suspended_request_id=request_id
            )
    cleared = (answered - set(suspended)) & marked
    if cleared:
        Organization.objects.filter(pk__in=cleared).update(
            bithuman_suspended_at=None, bithuman_suspended_request_id=""
        )


def suspension_clear(*, org: Organization) -> None:
    org.bithuman_suspended_at = None
    org.bithuman_suspended_request_id = ""
    Organization.objects.filter(pk=org.pk).update(
        bithuman_suspended_at=None, bithuman_suspended_request_id=""
    )


def connection_account(*, connection: BithumanConnection) -> Account | None:
    """Plan and credit balance from /v1/me, cached briefly; None when bitHuman cannot say."""
    key = f"bithuman:account:{connection.pk}:{connection.mode}:{connection.updated_at.timestamp()}"
    cached = cache.get(key)
    if cached is not None:
        return Account.model_validate(cached)
    try:
        # A page waits for this: one quick try, no retries.
        with client_for(connection=connection, timeout=3, max_retries=0) as client:
            account = client.account_get()
    except BithumanError as error:
        logger.warning("bitHuman /v1/me failed for org %s: %s", connection.organization_id, error)
        connection_outcome_record(connection=connection, error=error)
        return None
    connection_outcome_record(connection=connection)
    accountkeys.remember(api_secret=connection.api_secret, user_id=account.user_id)
    cache.set(key, account.model_dump(mode="json"), ACCOUNT_CACHE_SECONDS)
    return account


USER_ID_CACHE_SECONDS = 24 * 3600


def connection_user_id(*, connection: BithumanConnection, client: BithumanClient) -> str:
    """The account's `user_id` (GET /v1/me), which runtime-session paths carry
    (`/v2/{user_id}/...`); cached per connection and mode. Raises BithumanError."""
    key = f"bithuman:user_id:{connection.pk}:{connection.mode}:{connection.updated_at.timestamp()}"
    cached = cache.get(key)
    if cached:
        return str(cached)
    user_id = client.account_get().user_id
    if not user_id:
        raise MalformedResponseError(
            code=MALFORMED_RESPONSE, message="bitHuman's /v1/me gave no user_id", http_status=200
        )
    cache.set(key, user_id, USER_ID_CACHE_SECONDS)
    accountkeys.remember(api_secret=connection.api_secret, user_id=user_id)
    return user_id


@dataclass(frozen=True)
class ConnectionSaved:
    connection: BithumanConnection
    webhook_registered: bool
    webhook_problem: str = ""


def connection_live_save(
    *, actor: Membership, api_secret: str, receiver_url: str
) -> ConnectionSaved:
    """Check a live secret with POST /v1/validate, save it encrypted, register our webhook.

    An invalid secret saves nothing. A webhook that cannot be registered does not undo the
    connection (polling still works); the caller shows why.
    """
    role_require(actor, Role.ADMIN, "change the bitHuman connection")
    api_secret = api_secret.strip()
    if not api_secret:
        raise ApplicationError("Paste your bitHuman API secret.", field="api_secret")
    try:
        with BithumanClient(base_url=settings.BITHUMAN_API_URL, api_secret=api_secret) as client:
            valid = client.validate()
            webhook: WebhookWithSecret | None = None
            webhook_problem = ""
            if valid:
                try:
                    webhook = client.webhook_create(url=receiver_url, events=WEBHOOK_EVENTS)
                except BithumanError as error:
                    webhook_problem = error.message
    except AccountSuspendedError as error:
        raise upstream_failure(
            error,
            "bitHuman knows this secret, but its account is suspended (the balance is below "
            "bitHuman's suspension floor). Top up the bitHuman account, then save it again. "
            "Nothing was saved.",
            field="api_secret",
        ) from None
    except BithumanError as error:
        raise upstream_failure(
            error,
            f"bitHuman could not be reached to check this secret ({error.message}). "
            "Nothing was saved; try again.",
            field="api_secret",
        ) from None
    if not valid:
        raise ApplicationError(
            "bitHuman does not accept this API secret. Nothing was saved.", field="api_secret"
        )
    connection = connection_get(org=actor.organization)
    previous_webhook = (connection.webhook_id, connection.live_secret)
    connection.mode = ConnectionMode.LIVE
    connection.live_secret = api_secret
    connection.webhook_id = webhook.id if webhook else ""
    connection.webhook_secret = webhook.secret if webhook else ""
    connection.updated_by = actor.user
    connection.save()
    suspension_clear(org=actor.organization)  # another secret, perhaps another account
    activity_services.audit_record(
        org=actor.organization,
        actor=actor,
        action="connection.changed",
        target=connection,
        details={"mode": "live", "webhook_registered": webhook is not None},
    )
    _webhook_forget(webhook_id=previous_webhook[0], api_secret=previous_webhook[1])
    return ConnectionSaved(
        connection=connection,
        webhook_registered=webhook is not None,
        webhook_problem=webhook_problem,
    )


def _webhook_forget(*, webhook_id: str, api_secret: str) -> None:
    """Best effort: remove the webhook an older live secret registered."""
    if not webhook_id or not api_secret:
        return
    try:
        with BithumanClient(base_url=settings.BITHUMAN_API_URL, api_secret=api_secret) as client:
            client.webhook_delete(webhook_id=webhook_id)
    except BithumanError as error:
        logger.info("Could not delete old webhook %s: %s", webhook_id, error)


def connection_test_use(*, actor: Membership) -> BithumanConnection:
    """Back to Test mode (the sandbox). The live secret is kept for switching back."""
    role_require(actor, Role.ADMIN, "change the bitHuman connection")
    connection = connection_get(org=actor.organization)
    connection.mode = ConnectionMode.TEST
    connection.updated_by = actor.user
    connection.save(update_fields=["mode", "updated_by", "updated_at"])
    suspension_clear(org=actor.organization)
    activity_services.audit_record(
        org=actor.organization,
        actor=actor,
        action="connection.changed",
        target=connection,
        details={"mode": "test"},
    )
    return connection
