"""Users, organizations, memberships and invitations. Business rules live in services.py."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from portal.crypto import EncryptedTextField, mask
from portal.scoping import OrgScopedModel, OrgScopedQuerySet, Role


def email_normalize(email: str) -> str:
    """Emails are compared case-insensitively: we store them stripped and lower-cased."""
    return email.strip().lower()


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email__iexact=email_normalize(username or ""))

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("Users need an email address.")
        user = self.model(email=email_normalize(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        extra.setdefault("email_verified_at", timezone.now())
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Logs in with their email address (unique, case-insensitive)."""

    email = models.EmailField("email", max_length=254, unique=True)
    full_name = models.CharField("name", max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="Can log into the staff admin site.")
    date_joined = models.DateTimeField(default=timezone.now)
    # Set when the person proved they read this address (the sign-up link, an invitation link,
    # a password reset). Until then they may not create organizations or invite anyone.
    email_verified_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_unique_ci"),
        ]

    def __str__(self) -> str:
        return self.email

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = email_normalize(self.email)
        super().save(*args, **kwargs)

    def get_full_name(self) -> str:
        return self.full_name or self.email

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None

    def get_short_name(self) -> str:
        return self.full_name or self.email


class Organization(models.Model):
    """A customer company: the unit of tenancy."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Set by staff ("Suspend organization"): members can sign in and read, but nothing that
    # spends at bitHuman (generate, sessions) and no API. portal.tenancy.organization_active_require
    # is the one check.
    suspended_at = models.DateTimeField(null=True, blank=True, editable=False)
    suspended_reason = models.CharField(max_length=300, blank=True, editable=False)
    # Members must sign in with a second factor (organizations.twofactor) to see the organization.
    require_two_factor = models.BooleanField(default=False)
    # bitHuman answered ACCOUNT_SUSPENDED to the connection's secret (its account is below the
    # suspension floor): every page shows it; the next successful call or a connection change
    # clears it (organizations.connections.connection_outcome_record). Kept here, not on the
    # connection, so the banner costs no query.
    bithuman_suspended_at = models.DateTimeField(null=True, blank=True, editable=False)
    bithuman_suspended_request_id = models.CharField(max_length=128, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None


class MembershipQuerySet(OrgScopedQuerySet):
    def owners(self) -> MembershipQuerySet:
        return self.filter(role=Role.OWNER)


class Membership(OrgScopedModel):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    objects = MembershipQuerySet.as_manager()  # type: ignore[misc]

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="membership_unique"),
        ]
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class InvitationQuerySet(OrgScopedQuerySet):
    def pending(self) -> InvitationQuerySet:
        return self.filter(accepted_at__isnull=True, revoked_at__isnull=True)


class Invitation(OrgScopedModel):
    """An invitation to join an organization. Only the token's SHA-256 is stored."""

    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()  # type: ignore[misc]

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "email"])]

    def __str__(self) -> str:
        return f"{self.email} to {self.organization} ({self.role})"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def state(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.is_expired:
            return "expired"
        return "pending"


class ConnectionMode(models.TextChoices):
    TEST = "test", "Test (sandbox)"
    LIVE = "live", "Live (bitHuman API)"


def _receiver_token() -> str:
    return secrets.token_urlsafe(24)


class BithumanConnection(models.Model):
    """How an organization reaches bitHuman: its own sandbox account (Test) or a live secret.

    Secrets are encrypted at rest (portal.crypto) and only ever shown masked.
    """

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="bithuman_connection"
    )
    mode = models.CharField(
        max_length=10, choices=ConnectionMode.choices, default=ConnectionMode.TEST
    )
    sandbox_secret = EncryptedTextField(blank=True)
    live_secret = EncryptedTextField(blank=True)
    # The webhook bitHuman delivers to (registered when a live secret is saved).
    webhook_id = models.CharField(max_length=100, blank=True)
    webhook_secret = EncryptedTextField(blank=True)
    # The unguessable path segment of this organization's webhook receiver URL.
    receiver_token = models.CharField(max_length=64, unique=True, default=_receiver_token)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.organization} ({self.mode})"

    @property
    def is_live(self) -> bool:
        return self.mode == ConnectionMode.LIVE

    @property
    def api_secret(self) -> str:
        return self.live_secret if self.is_live else self.sandbox_secret

    @property
    def base_url(self) -> str:
        return settings.BITHUMAN_API_URL if self.is_live else settings.SANDBOX_BASE_URL

    @property
    def live_secret_masked(self) -> str:
        return mask(self.live_secret)


class WebhookDelivery(models.Model):
    """A bitHuman webhook delivery, kept once per event: `delivery_id` is the `id` of the signed
    body (the unsigned `X-BitHuman-Delivery` header is not trusted); duplicates are ignored."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    delivery_id = models.CharField(max_length=100)
    event = models.CharField(max_length=50)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "delivery_id"], name="webhook_delivery_unique"
            )
        ]
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.event} {self.delivery_id}"


class ApiScope(models.TextChoices):
    AGENTS_READ = "agents:read", "Read agents"
    AGENTS_WRITE = "agents:write", "Create and change agents"
    SESSIONS_READ = "sessions:read", "Read sessions"
    SESSIONS_WRITE = "sessions:write", "Start and operate sessions"
    AUDIT_READ = "audit:read", "Read the audit log"
    # The bitHuman account's runtime sessions, the portal's and others (admins' rights).
    LIVE_SESSIONS_READ = "live_sessions:read", "Read the bitHuman account's live sessions"
    LIVE_SESSIONS_WRITE = "live_sessions:write", "Terminate the bitHuman account's live sessions"
    USAGE_READ = "usage:read", "Read usage and credits"


API_KEY_PREFIX = "bhp_"
API_KEY_LOOKUP_LENGTH = 12  # "bhp_" + 8 characters: stored in clear to find the key


class ApiKeyQuerySet(OrgScopedQuerySet):
    def usable(self) -> ApiKeyQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiKey(OrgScopedModel):
    """An organization's key for the REST API. Only its SHA-256 is stored (keys are 256-bit
    random, so a plain hash is enough); the clear prefix finds it, the last 4 help people."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=API_KEY_LOOKUP_LENGTH, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    last4 = models.CharField(max_length=4)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()  # type: ignore[misc]

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…{self.last4})"

    @property
    def display(self) -> str:
        return f"{self.prefix}…{self.last4}"

    @property
    def is_usable(self) -> bool:
        if self.revoked_at:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


class ApiIdempotencyKey(models.Model):
    """Stripe-style idempotency for API POSTs: the first answer, replayed for 24 h to the same
    API key only (another key of the organization never sees it)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="api_idempotency_key_unique")
        ]

    def __str__(self) -> str:
        return self.key
