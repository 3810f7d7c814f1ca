"""Writes for users, organizations, memberships and invitations.

Every role rule of the product is enforced here, so the pages, the API and the admin commands
cannot disagree: nobody grants a role above their own, nobody changes someone ranked above
them, only owners touch owners, and the last owner can neither leave nor be demoted.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from activity import services as activity_services
from organizations import verification
from portal import throttle
from portal.bithuman.client import BithumanClient
from portal.bithuman.errors import BithumanError
from portal.bithuman.types import Account, WebhookEvent, WebhookWithSecret
from portal.errors import ApplicationError, Conflict, Forbidden, upstream_failure
from portal.models import (
    API_KEY_LOOKUP_LENGTH,
    API_KEY_PREFIX,
    ApiKey,
    ApiScope,
    BithumanConnection,
    ConnectionMode,
    Invitation,
    Membership,
    Organization,
    User,
    email_normalize,
    token_hash,
)
from portal.tenancy import ROLE_RANK, Role, role_at_least, role_require, roles_grantable_by
from portal.text import one_line_quote, one_line_require

logger = logging.getLogger(__name__)

# --- Users and organizations --------------------------------------------------------------------


def _slug_unique(name: str) -> str:
    base = slugify(name)[:50].strip("-") or "org"
    slug = base
    while Organization.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


@transaction.atomic
def organization_create(*, name: str, owner: User) -> Organization:
    verification.require_verified(owner, "create an organization")
    name = one_line_require(name, field="name").strip()
    if not name:
        raise ApplicationError("Give the organization a name.", field="name")
    org = Organization.objects.create(name=name, slug=_slug_unique(name))
    Membership.objects.create(organization=org, user=owner, role=Role.OWNER)
    connection_create(org=org)
    return org


@transaction.atomic
def user_create(
    *, email: str, password: str | None, full_name: str = "", email_verified: bool = True
) -> User:
    """An account. `email_verified`: the caller knows the address is theirs (an invitation
    link, an operator's command); sign-up passes False until the link is opened."""
    email = email_normalize(email)
    one_line_require(full_name, field="full_name")
    if User.objects.filter(email__iexact=email).exists():
        raise ApplicationError("An account with this email already exists.", field="email")
    try:
        with transaction.atomic():
            return User.objects.create_user(
                email=email,
                password=password,
                full_name=full_name,
                email_verified_at=timezone.now() if email_verified else None,
            )
    except IntegrityError:  # a concurrent sign-up with the same email won the race
        raise ApplicationError(
            "An account with this email already exists.", field="email"
        ) from None


def organization_rename(*, actor: Membership, name: str) -> Organization:
    role_require(actor, Role.OWNER, "rename the organization")
    name = one_line_require(name, field="name").strip()
    if not name:
        raise ApplicationError("Give the organization a name.", field="name")
    org = actor.organization
    org.name = name
    org.save(update_fields=["name"])
    return org


def organization_delete(*, actor: Membership, confirm_slug: str) -> None:
    role_require(actor, Role.OWNER, "delete the organization")
    org = actor.organization
    if confirm_slug.strip() != org.slug:
        raise ApplicationError(f"Type {org.slug} to confirm.", field="confirm")
    org.delete()


# --- Memberships --------------------------------------------------------------------------------


def _owners_locked(org: Organization) -> int:
    """Lock the organization's owner rows and count them (last-owner checks must not race)."""
    return len(list(Membership.objects.for_org(org).owners().select_for_update()))


@transaction.atomic
def membership_role_change(*, actor: Membership, target: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise ApplicationError("Choose a valid role.", field="role")
    role_require(actor, Role.ADMIN, "change roles")
    if role not in roles_grantable_by(actor.role):
        raise ApplicationError("You cannot grant a role above your own.", field="role")
    if ROLE_RANK[target.role] > ROLE_RANK[actor.role]:
        raise Forbidden("You cannot change the role of someone ranked above you.")
    if target.role == role:
        return target
    if target.role == Role.OWNER and _owners_locked(target.organization) <= 1:
        raise Conflict("The last owner cannot be demoted. Make someone else an owner first.")
    revoked = _invitations_revoke_sent_by(target, above=role)
    details: dict[str, Any] = {"from": target.role, "to": role}
    if revoked:
        details["invitations_revoked"] = revoked
    activity_services.audit_record(
        org=target.organization,
        actor=actor,
        action="member.role_changed",
        target=target,
        details=details,
    )
    target.role = role
    target.save(update_fields=["role"])
    return target


def _invitations_revoke_sent_by(member: Membership, *, above: str | None = None) -> list[str]:
    """Revoke the pending invitations `member` sent in their organization: those for a role
    above `above` (the role they keep), or all of them (they leave). Their emails, for the audit
    log. An invitation outlives no right of its sender: a removed admin cannot come back as
    admin through an invitation to their own second address."""
    pending = (
        Invitation.objects.for_org(member.organization)
        .pending()
        .filter(invited_by_id=member.user_id)
    )
    if above is not None:
        pending = pending.filter(
            role__in=[r for r in Role.values if ROLE_RANK[r] > ROLE_RANK[above]]
        )
    invitations = list(pending.select_for_update())
    Invitation.objects.filter(pk__in=[i.pk for i in invitations]).update(revoked_at=timezone.now())
    return [invitation.email for invitation in invitations]


def member_api_keys(*, target: Membership) -> list[ApiKey]:
    """The usable API keys `target` created in their organization (shown before removing them:
    a key acts for the organization, not its creator, so it survives them unless revoked)."""
    return list(
        ApiKey.objects.for_org(target.organization).usable().filter(created_by_id=target.user_id)
    )


@transaction.atomic
def membership_remove(
    *, actor: Membership, target: Membership, revoke_api_keys: bool = False
) -> MemberRemoved:
    """Remove a member, or leave (when actor is target). The pending invitations they sent are
    revoked; the API keys they created are revoked too when `revoke_api_keys`, else kept (the
    remover was shown them); the audit entry records which."""
    leaving = actor.pk == target.pk
    if not leaving:
        role_require(actor, Role.ADMIN, "remove members")
        if ROLE_RANK[target.role] > ROLE_RANK[actor.role]:
            raise Forbidden("You cannot remove someone ranked above you.")
    if target.role == Role.OWNER and _owners_locked(target.organization) <= 1:
        raise Conflict(
            "The last owner cannot leave. Make someone else an owner first, "
            "or delete the organization."
        )
    invitations = _invitations_revoke_sent_by(target)
    keys = member_api_keys(target=target)
    if revoke_api_keys and keys:
        ApiKey.objects.filter(pk__in=[key.pk for key in keys], revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        for key in keys:
            activity_services.audit_record(
                org=target.organization,
                actor=actor,
                action="api_key.revoked",
                target=key,
                details={"reason": "its creator was removed"},
            )
    details: dict[str, Any] = {"role": target.role, "left": leaving}
    if invitations:
        details["invitations_revoked"] = invitations
    if keys:
        details["api_keys"] = [f"{key.name} ({key.display})" for key in keys]
        details["api_keys_action"] = "revoked" if revoke_api_keys else "kept"
    activity_services.audit_record(
        org=target.organization,
        actor=actor,
        action="member.removed",
        target=target,
        details=details,
    )
    target.delete()
    return MemberRemoved(
        invitations_revoked=len(invitations),
        api_keys=keys,
        api_keys_revoked=revoke_api_keys and bool(keys),
    )


@dataclass(frozen=True)
class MemberRemoved:
    invitations_revoked: int
    api_keys: list[ApiKey]  # the usable keys they had created
    api_keys_revoked: bool


# --- Invitations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str  # shown once, in the email; only its hash is stored
    link: str


def invitation_link(*, base_url: str, token: str) -> str:
    return base_url.rstrip("/") + reverse("invitation_accept", kwargs={"token": token})


def _invitation_send(*, invitation: Invitation, token: str, base_url: str) -> IssuedInvitation:
    """The invitation email. Whatever people wrote (names) only ever follows a fixed label on
    the same line, flattened to one line and shortened: no user text can start a line of its
    own, so nobody can make the portal's email say something of theirs."""
    link = invitation_link(base_url=base_url, token=token)
    inviter = invitation.invited_by
    organization = one_line_quote(invitation.organization.name, limit=100)
    context = {
        "organization": organization,
        "inviter": (
            f"{one_line_quote(inviter.full_name, limit=80)} ({inviter.email})".lstrip()
            if inviter and inviter.full_name
            else (inviter.email if inviter else "an administrator")
        ),
        "role": invitation.get_role_display(),
        "link": link,
        "ttl_days": settings.INVITATION_TTL.days,
    }
    send_mail(
        subject=f"You are invited to {organization} on bitHuman Portal",
        message=render_to_string("portal/emails/invitation.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )
    return IssuedInvitation(invitation=invitation, token=token, link=link)


def _invitations_throttle(actor: Membership, *, field: str | None = None) -> None:
    """Invitations and resends share two budgets: the inviter's and the organization's."""
    window = settings.INVITATION_LIMIT_WINDOW
    throttle.require(
        [
            (
                throttle.Limit("invite:user", settings.INVITATION_LIMIT_PER_INVITER, window),
                str(actor.user_id),
                "You have sent too many invitations for now.",
            ),
            (
                throttle.Limit("invite:org", settings.INVITATION_LIMIT_PER_ORGANIZATION, window),
                str(actor.organization_id),
                "This organization has sent too many invitations for now.",
            ),
        ],
        field=field,
    )


def _token_new() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


@transaction.atomic
def invitation_create(
    *, actor: Membership, email: str, role: str, base_url: str
) -> IssuedInvitation:
    role_require(actor, Role.ADMIN, "invite people")
    if actor.user is not None:
        verification.require_verified(actor.user, "invite people")
    org = actor.organization
    email = email_normalize(email)
    if role not in Role.values:
        raise ApplicationError("Choose a valid role.", field="role")
    if role not in roles_grantable_by(actor.role):
        raise ApplicationError("You cannot grant a role above your own.", field="role")
    if Membership.objects.for_org(org).filter(user__email__iexact=email).exists():
        raise ApplicationError("This person is already a member.", field="email")
    if (
        Invitation.objects.for_org(org)
        .pending()
        .filter(email__iexact=email, expires_at__gt=timezone.now())
        .exists()
    ):
        raise ApplicationError(
            "This email already has a pending invitation: resend it instead.", field="email"
        )
    _invitations_throttle(actor, field="email")
    token, hashed = _token_new()
    invitation = Invitation.objects.create(
        organization=org,
        email=email,
        role=role,
        invited_by=actor.user,
        token_hash=hashed,
        expires_at=timezone.now() + settings.INVITATION_TTL,
    )
    activity_services.audit_record(
        org=org, actor=actor, action="member.invited", target=invitation, details={"role": role}
    )
    return _invitation_send(invitation=invitation, token=token, base_url=base_url)


@transaction.atomic
def invitation_resend(
    *, actor: Membership, invitation: Invitation, base_url: str
) -> IssuedInvitation:
    """A fresh link and a fresh 7 days; the old link stops working."""
    role_require(actor, Role.ADMIN, "resend invitations")
    if invitation.accepted_at or invitation.revoked_at:
        raise Conflict(f"This invitation was {invitation.state}; invite again instead.")
    if not role_at_least(actor.role, invitation.role):
        raise Forbidden("You cannot grant a role above your own.")
    _invitations_throttle(actor)
    token, hashed = _token_new()
    invitation.token_hash = hashed
    invitation.expires_at = timezone.now() + settings.INVITATION_TTL
    invitation.save(update_fields=["token_hash", "expires_at"])
    activity_services.audit_record(
        org=invitation.organization, actor=actor, action="invitation.resent", target=invitation
    )
    return _invitation_send(invitation=invitation, token=token, base_url=base_url)


def invitation_revoke(*, actor: Membership, invitation: Invitation) -> Invitation:
    role_require(actor, Role.ADMIN, "revoke invitations")
    if invitation.accepted_at:
        raise Conflict("This invitation was already accepted; remove the member instead.")
    if not invitation.revoked_at:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        activity_services.audit_record(
            org=invitation.organization,
            actor=actor,
            action="invitation.revoked",
            target=invitation,
        )
    return invitation


def invitation_find(*, token: str) -> Invitation | None:
    return (
        Invitation.objects.select_related("organization")
        .filter(token_hash=token_hash(token))
        .first()
    )


def invitation_problem(*, invitation: Invitation | None) -> str | None:
    """Why this link cannot be used, in words for the page, or None if it can."""
    if invitation is None:
        return "This invitation link is not valid. Ask for a new one."
    if invitation.accepted_at:
        return "This invitation has already been used."
    if invitation.revoked_at:
        return "This invitation was revoked. Ask an administrator for a new one."
    if invitation.is_expired:
        return "This invitation has expired. Ask an administrator to resend it."
    return None


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    problem = invitation_problem(invitation=invitation)
    if problem:
        raise Conflict(problem)
    if email_normalize(user.email) != email_normalize(invitation.email):
        raise Forbidden(
            f"This invitation was sent to {invitation.email}, but you are logged in as "
            f"{user.email}. Log out and open the link again."
        )
    now = timezone.now()
    # Compare-and-set: two clicks on the same link cannot both succeed.
    claimed = Invitation.objects.filter(
        pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).update(accepted_at=now, accepted_by=user)
    if not claimed:
        raise Conflict("This invitation has already been used.")
    verification.mark_verified(user=user)  # the link was emailed to this address
    membership, _created = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
    )
    activity_services.audit_record(
        org=invitation.organization,
        actor=user,
        action="member.joined",
        target=membership,
        details={"role": membership.role},
    )
    return membership


@transaction.atomic
def invitation_accept_with_signup(
    *, invitation: Invitation, password: str, full_name: str
) -> tuple[User, Membership]:
    user = user_create(email=invitation.email, password=password, full_name=full_name)
    return user, invitation_accept(invitation=invitation, user=user)


def invitations_expire() -> int:
    """Housekeeping: delete never-accepted invitations that expired a while ago."""
    cutoff = timezone.now() - settings.INVITATION_RETENTION
    deleted, _ = Invitation.objects.filter(accepted_at__isnull=True, expires_at__lt=cutoff).delete()
    return deleted


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
        return None
    cache.set(key, account.model_dump(mode="json"), ACCOUNT_CACHE_SECONDS)
    return account


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
    activity_services.audit_record(
        org=actor.organization,
        actor=actor,
        action="connection.changed",
        target=connection,
        details={"mode": "test"},
    )
    return connection


# --- API keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    key: str  # shown once


def api_key_create(
    *,
    org: Organization,
    name: str,
    scopes: list[str],
    created_by: User | None,
    expires_at: datetime | None = None,
) -> IssuedApiKey:
    """A new key: `bhp_` + 43 url-safe characters (256 random bits). Only its hash is kept."""
    name = one_line_require(name, field="name").strip()
    if not name:
        raise ApplicationError("Give the key a name.", field="name")
    unknown = set(scopes) - set(ApiScope.values)
    if not scopes or unknown:
        raise ApplicationError("Choose at least one valid scope.", field="scopes")
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("The expiry must be in the future.", field="expires_at")
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        organization=org,
        name=name,
        prefix=key[:API_KEY_LOOKUP_LENGTH],
        key_hash=token_hash(key),
        last4=key[-4:],
        scopes=sorted(set(scopes)),
        created_by=created_by,
        expires_at=expires_at,
    )
    return IssuedApiKey(api_key=api_key, key=key)


def api_key_create_by(*, actor: Membership, **kwargs: object) -> IssuedApiKey:
    role_require(actor, Role.ADMIN, "manage API keys")
    issued = api_key_create(org=actor.organization, created_by=actor.user, **kwargs)  # type: ignore[arg-type]
    activity_services.audit_record(
        org=actor.organization,
        actor=actor,
        action="api_key.created",
        target=issued.api_key,
        details={"scopes": issued.api_key.scopes},
    )
    return issued


def api_key_revoke(*, actor: Membership, api_key: ApiKey) -> ApiKey:
    role_require(actor, Role.ADMIN, "manage API keys")
    revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if revoked:
        activity_services.audit_record(
            org=actor.organization, actor=actor, action="api_key.revoked", target=api_key
        )
    api_key.refresh_from_db()
    return api_key


# --- Suspension (staff) -------------------------------------------------------------------------


@transaction.atomic
def organization_suspend(*, org: Organization, staff_user: User, reason: str) -> bool:
    """Suspend (Django admin): members keep reading; generating, sessions and the API stop
    (portal.tenancy.organization_active_require). False if it already was."""
    reason = " ".join(reason.split())[:300]
    if not reason:
        raise ApplicationError("Say why: members see the reason.", field="reason")
    changed = Organization.objects.filter(pk=org.pk, suspended_at__isnull=True).update(
        suspended_at=timezone.now(), suspended_reason=reason
    )
    if changed:
        org.refresh_from_db()
        activity_services.audit_record(
            org=org,
            actor=staff_user,
            action="organization.suspended",
            target=org,
            details={"reason": reason},
            staff=True,
        )
    return bool(changed)


@transaction.atomic
def organization_unsuspend(*, org: Organization, staff_user: User) -> bool:
    changed = Organization.objects.filter(pk=org.pk, suspended_at__isnull=False).update(
        suspended_at=None, suspended_reason=""
    )
    if changed:
        org.refresh_from_db()
        activity_services.audit_record(
            org=org, actor=staff_user, action="organization.unsuspended", target=org, staff=True
        )
    return bool(changed)
