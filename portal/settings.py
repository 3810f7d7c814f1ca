"""Settings for the bitHuman portal, read from the environment (django-environ).

Every variable is documented in the README's "Configuration" table. Local runs (`manage.py`,
`make run`, the tests) default to DJANGO_DEBUG=true; anything else (gunicorn, Celery in
production) defaults to false and then refuses to start without a real secret key and hosts.
"""

import base64
import hashlib
import os
import tempfile
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from python_ipware import IpWare

env = environ.Env()

BASE_DIR = Path(__file__).resolve().parent.parent
# Local state (SQLite database, file broker, cache, media) lives here unless configured otherwise.
VAR_DIR = Path(env.str("PORTAL_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# --- Core ---------------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)

_DEV_SECRET_KEY = "django-insecure-local-development-key-never-use-in-production"  # noqa: S105
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS",
    default=["127.0.0.1", "localhost", "[::1]", env.str("PORTAL_HOST", default="127.0.0.1")]
    if DEBUG
    else [],
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

if not DEBUG:
    if not SECRET_KEY or SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set to a random value of at least 50 characters "
            "when DJANGO_DEBUG is false."
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must be set when DJANGO_DEBUG is false.")

# Where `make run`'s web server listens (Procfile); the default site URL follows it.
PORTAL_HOST = env.str("PORTAL_HOST", default="127.0.0.1")
PORTAL_PORT = env.int("PORTAL_PORT", default=8000)
# A wildcard bind address is reached from this machine at the loopback address.
_site_host = "127.0.0.1" if PORTAL_HOST in {"0.0.0.0", "::", "[::]"} else PORTAL_HOST  # noqa: S104
# The portal's own public address, used in emails (invitation links, password reset) and as the
# base of the sandbox URL in Test mode.
SITE_URL = env.str("PORTAL_SITE_URL", default=f"http://{_site_host}:{PORTAL_PORT}").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "ninja",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "portal",
    "organizations",
    "agents",
    "sessions.apps.AgentSessionsConfig",
    "activity",
    "interfaces",
]

MIDDLEWARE = [
    # /healthz and /readyz, answered before host validation and the HTTPS redirect.
    "portal.health.HealthCheckMiddleware",
    # Request id and log context (see portal/logging.py), one log line per request.
    "portal.logging.RequestContextMiddleware",
    # Database unreachable (a PostgreSQL restart): 503 with a message and Retry-After, not 500.
    "portal.outage.DatabaseOutageMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): signed in with a second factor (organizations.twofactor).
    "django_otp.middleware.OTPMiddleware",
    "activity.middleware.AuditRequestMiddleware",  # client address for the audit log
    "django.contrib.messages.middleware.MessageMiddleware",
    # Staff impersonation: the time box, the banner's data, the audit of every write.
    "organizations.impersonation.ImpersonationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Oversized bodies: 413 from Content-Length, before the body is read (CSRF reads it in
    # process_view, after every middleware); late enough for the 413 to carry the headers above.
    "portal.bodylimit.RequestBodyLimitMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "portal.apisupport.ApiRateLimitHeadersMiddleware",
    # Last, as django-axes requires.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "interfaces.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "organizations.context_processors.organizations",
                "organizations.context_processors.impersonation",
            ],
        },
    },
]

# Request bodies (portal/bodylimit.py): the routes that take media accept a 10 MB image plus a
# 50 MB voice sample, base64-encoded in JSON (ours and bitHuman's); every other route is small.
# Both are enforced from Content-Length before the body is read.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=85 * 1024 * 1024)
REQUEST_BODY_MAX_SIZE = env.int("REQUEST_BODY_MAX_SIZE", default=1024 * 1024)

# --- Database -----------------------------------------------------------------------------------
# SQLite under var/ by default; PostgreSQL through postgres://user:pass@host:port/name.
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'portal.sqlite3'}"),
}
DATABASES["default"].setdefault("ATOMIC_REQUESTS", False)
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # An unreachable server fails a request within seconds (a 503, portal/outage.py), not a hang.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default: the web server, the worker (and its pool) and beat write to one file at
    # once. SQLite allows one writer at a time; these options make the others wait their turn
    # instead of failing with "database is locked" (tests/portal/test_sqlite_concurrency.py):
    # - WAL journal: readers never block the writer nor the writer readers (a page load does not
    #   stall a task's commit). It is a property of the file, set again on every connection.
    # - timeout (sqlite3's busy timeout): a writer waits up to 20 s for the write lock.
    # - transaction_mode IMMEDIATE: every atomic block takes the write lock at BEGIN. In the default
    #   DEFERRED mode a block that reads and then writes asks for the lock at its first write, and
    #   if another connection committed since its read SQLite fails it at once ("database is
    #   locked", no waiting: retrying could not help, its snapshot is stale).
    # - CONN_MAX_AGE 0: no connection is held (with its WAL snapshot) between requests.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (locks, rate limits): Redis when REDIS_URL is set, else a file cache under var/ ------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            # Degrades (misses, dropped writes) while Redis is down instead of failing requests.
            "BACKEND": "portal.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# --- Users and authentication -------------------------------------------------------------------
AUTH_USER_MODEL = "portal.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "portal.backends.EmailBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_RESET_TIMEOUT = 60 * 60 * 24

# Brute-force protection: lock a (username, IP address) pair after N failures.
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_CALLABLE = "portal.backends.axes_username"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_RESET_ON_SUCCESS = True
# The client's address (portal/clientip.py): also used by the API throttles and the audit log.
AXES_CLIENT_IP_CALLABLE = "portal.clientip.client_ip"
# The reverse proxies in front of the portal, one entry per hop (address, network or prefix),
# outermost first. Empty: the connecting address is the client.
PORTAL_TRUSTED_PROXIES = env.list("PORTAL_TRUSTED_PROXIES", default=[])
if "AXES_PROXY_COUNT" in os.environ:
    raise ImproperlyConfigured(
        "AXES_PROXY_COUNT was replaced by PORTAL_TRUSTED_PROXIES: list your reverse proxies' "
        "addresses or networks (e.g. PORTAL_TRUSTED_PROXIES=172.16.0.0/12)."
    )
try:
    IpWare(proxy_list=PORTAL_TRUSTED_PROXIES)
except ValueError as _error:
    raise ImproperlyConfigured(f"PORTAL_TRUSTED_PROXIES: {_error}") from None

# Staff impersonation (portal/impersonation.py) ends by itself after this many minutes.
IMPERSONATION_MINUTES = env.int("IMPERSONATION_MINUTES", default=30)

# Two-factor sign-in (django-otp): the name authenticator apps show.
OTP_TOTP_ISSUER = "bitHuman Portal"

INVITATION_TTL = timedelta(days=7)
# Expired, never-accepted invitations are deleted by housekeeping this long after expiring.
INVITATION_RETENTION = timedelta(days=30)
# Invitations and resends (each sends an email): per inviter and per organization, per window.
INVITATION_LIMIT_PER_INVITER = 20
INVITATION_LIMIT_PER_ORGANIZATION = 50
INVITATION_LIMIT_WINDOW = 3600  # seconds
# Sign-up confirmation links: how long they work, and emails to one address per window.
EMAIL_VERIFICATION_MAX_AGE = 3 * 24 * 3600  # seconds
EMAIL_VERIFICATION_LIMIT = 3
EMAIL_VERIFICATION_LIMIT_WINDOW = 3600  # seconds

# --- Email --------------------------------------------------------------------------------------
# consolemail:// prints messages (invitation and reset links) to the terminal (the local default);
# smtp+tls://user:password@host:587 sends (production defaults to an SMTP relay on localhost).
_email = env.email_url("EMAIL_URL", default="consolemail://" if DEBUG else "smtp://localhost:25")
_email_options = {
    "host": _email.get("EMAIL_HOST"),
    "port": _email.get("EMAIL_PORT"),
    "username": _email.get("EMAIL_HOST_USER"),
    "password": _email.get("EMAIL_HOST_PASSWORD"),
    "use_tls": _email.get("EMAIL_USE_TLS"),
    "use_ssl": _email.get("EMAIL_USE_SSL"),
}
MAILERS = {
    "default": {
        "BACKEND": _email["EMAIL_BACKEND"],
        "OPTIONS": {k: v for k, v in _email_options.items() if v}
        if _email["EMAIL_BACKEND"].endswith("smtp.EmailBackend")
        else {},
    }
}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="bitHuman Portal <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Static and media ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = DEBUG  # serve app static files without collectstatic in local runs
STORAGES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# Media on S3-compatible storage (django-storages, requirements/prod.txt) when a bucket is set.
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
if AWS_STORAGE_BUCKET_NAME:
    _s3_options = {
        "bucket_name": AWS_STORAGE_BUCKET_NAME,
        "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default=""),
        "region_name": env.str("AWS_S3_REGION_NAME", default=""),
        "access_key": env.str("AWS_ACCESS_KEY_ID", default=""),
        "secret_key": env.str("AWS_SECRET_ACCESS_KEY", default=""),
        "location": env.str("AWS_S3_LOCATION", default="media"),
    }
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            # Unset options fall back to boto3's own (instance role, AWS_* variables).
            **{key: value for key, value in _s3_options.items() if value},
            # Private objects, reached through short-lived signed URLs; never overwritten.
            "default_acl": "private",
            "querystring_auth": True,
            "querystring_expire": 3600,
            "file_overwrite": False,
        },
    }

# --- Internationalisation -----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Security -----------------------------------------------------------------------------------
# Content Security Policy (Django 6's built-in): scripts only from us, inline ones need the nonce.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:", "blob:"],
    "media-src": [CSP.SELF, "blob:"],
    "connect-src": [CSP.SELF],
    "frame-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.SELF],
    "object-src": [CSP.NONE],
}
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

if not DEBUG:
    # HTTPS only. `__Host-` cookies are bound to this exact host, sent only over HTTPS, path /.
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
    # /healthz and /readyz are probed over plain HTTP inside the private network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# --- Celery -------------------------------------------------------------------------------------
# The embedded default is a folder broker under var/celery/ (no server needed; one host only):
# kombu's file transport, fixed in portal/filebroker.py so that concurrent publishers and consumers
# can neither lose nor corrupt a message (kombu's own races: a worker could read a message before
# it was written, crash on it, and lose it).
_CELERY_DIR = VAR_DIR / "celery"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT = "portal.filebroker:Transport"
    # Absolute paths, all on one file system (messages move between them by rename). The transport
    # creates them; passed only for this broker (other transports reject them).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_CELERY_DIR / "queue"),
        "data_folder_out": str(_CELERY_DIR / "queue"),
        "staging_folder": str(_CELERY_DIR / "staging"),  # messages being written
        "claimed_folder": str(_CELERY_DIR / "claimed"),  # messages taken, not yet acknowledged
        "unreadable_folder": str(_CELERY_DIR / "unreadable"),  # set aside, logged
        "control_folder": str(_CELERY_DIR / "control"),  # exchange tables
        "polling_interval": 0.1,  # kombu's 1 s would add up to a second to every task
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 30
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Through a broker outage of any length, workers and beat keep retrying (every 1-2 s, see
# portal/celery.py) instead of exiting after 100 attempts.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
if CELERY_BROKER_URL.startswith("redis://"):
    # kombu's Redis transport, fixed so a worker survives the broker going away (portal/celery.py).
    CELERY_BROKER_TRANSPORT = "portal.celery:RedisTransport"
CELERY_TIMEZONE = TIME_ZONE
# With DJANGO_DEBUG=false the portal refuses to start on the file broker or a per-host cache
# (portal/checks.py): locks, poll ticks and rate budgets would be per host. Set this to say a
# single host is intended (one machine running web, worker and beat).
PORTAL_SINGLE_HOST = env.bool("PORTAL_SINGLE_HOST", default=False)
# Embedded beat's schedule file: with the rest of the local state, one per PORTAL_VAR_DIR.
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "invitations-expire": {
        "task": "organizations.tasks.invitations_expire",
        "schedule": timedelta(hours=1),
    },
}
# The agent poller and the submit sweeper are added below, with their settings.

# --- Encryption of stored secrets --------------------------------------------------------------
# Fernet keys, comma-separated, newest first (see README "Key rotation"). Production must set
# its own; local runs generate one once and keep it in VAR_DIR (never derived from the committed
# dev secret key, which stays second only to read what older checkouts encrypted with it).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])


def _dev_encryption_key(path: Path) -> str:
    """The local key in `path`, made on first use (0600; written aside then linked into place,
    so the web server and the worker starting together agree on one complete key)."""
    from cryptography.fernet import Fernet

    if not path.exists():
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".key-")  # mode 0600
        with os.fdopen(fd, "w") as out:
            out.write(Fernet.generate_key().decode() + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            os.unlink(temporary)
    return path.read_text().strip()


if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be set when DJANGO_DEBUG is false; make a key with "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())'"
        )
    _legacy = hashlib.sha256(b"field-encryption:" + SECRET_KEY.encode()).digest()
    FIELD_ENCRYPTION_KEYS = [
        _dev_encryption_key(VAR_DIR / "field-encryption.key"),
        base64.urlsafe_b64encode(_legacy).decode(),
    ]

# --- bitHuman API and its sandbox -------------------------------------------------------------
# The real API. Organizations in Live mode use it with their own secret.
BITHUMAN_API_URL = env.str("BITHUMAN_API_URL", default="https://api.bithuman.ai").rstrip("/")
BITHUMAN_TIMEOUT = env.float("BITHUMAN_TIMEOUT", default=15.0)
BITHUMAN_MAX_RETRIES = env.int("BITHUMAN_MAX_RETRIES", default=3)
# The sandbox (a simulator of the API) is served at /sandbox/ when enabled. Organizations in Test
# mode reach it over real HTTP at SANDBOX_BASE_URL.
SANDBOX_ENABLED = env.bool("SANDBOX_ENABLED", default=DEBUG)
SANDBOX_BASE_URL = env.str("SANDBOX_BASE_URL", default=f"{SITE_URL}/sandbox").rstrip("/")
# The sandbox's main knobs (the rest, and per-account overrides: README "The sandbox").
SANDBOX_TIME_SCALE = env.float("SANDBOX_TIME_SCALE", default=3.0)
SANDBOX_DEFAULT_PLAN = env.str("SANDBOX_DEFAULT_PLAN", default="pro")
SANDBOX_DEFAULT_CREDITS = env.int("SANDBOX_DEFAULT_CREDITS", default=10000)
SANDBOX_LATENCY_MS = env.int("SANDBOX_LATENCY_MS", default=0)
SANDBOX_ERROR_RATE = env.float("SANDBOX_ERROR_RATE", default=0.0)
SANDBOX_FORCE_429_RATE = env.float("SANDBOX_FORCE_429_RATE", default=0.0)
SANDBOX_ROOM_TTL = env.int("SANDBOX_ROOM_TTL", default=30)
if SANDBOX_ENABLED:
    # Installed (models, admin, tasks, the sandbox_account command) only when it is on; nothing
    # outside the sandbox imports it, the portal reaches it over HTTP at SANDBOX_BASE_URL.
    INSTALLED_APPS.append("sandbox")
    # Finishes sandbox generations nobody polls and fires their webhooks.
    CELERY_BEAT_SCHEDULE["sandbox-advance"] = {
        "task": "sandbox.tasks.sandbox_generations_advance",
        "schedule": timedelta(seconds=5),
        "options": {"expires": 5},
    }

# --- Agents: generation and the status poller ---------------------------------------------------
# Seconds between two polls of one agent (early in its run; long models slow down to the max).
AGENT_POLL_INTERVAL = env.float("AGENT_POLL_INTERVAL", default=5.0)
# Seconds between poller ticks (beat): a due agent waits at most this long. At most the interval.
AGENT_POLL_TICK = min(env.float("AGENT_POLL_TICK", default=1.0), AGENT_POLL_INTERVAL)
# The agent list API's count above 1,000 matches is cached this many seconds (agents/selectors.py).
AGENT_LIST_COUNT_CACHE_SECONDS = env.int("AGENT_LIST_COUNT_CACHE_SECONDS", default=10)
AGENT_POLL_BATCH = env.int("AGENT_POLL_BATCH", default=200)  # agents claimed per batch
# HTTP requests in flight per batch (cheap on aiohttp; bitHuman's Read budget is the real bound).
AGENT_POLL_CONCURRENCY = env.int("AGENT_POLL_CONCURRENCY", default=100)
# Drains a tick may queue at once (agents_poll_drain): worker processes poll in parallel up to it.
AGENT_POLL_FANOUT = env.int("AGENT_POLL_FANOUT", default=4)
AGENT_POLL_LEASE = env.float("AGENT_POLL_LEASE", default=60.0)  # seconds a claim lasts
# The slowest cadence (long models late in their run), also the cap of the error backoff.
AGENT_POLL_MAX_INTERVAL = env.float("AGENT_POLL_MAX_INTERVAL", default=60.0)
AGENT_DEADLINE_FACTOR = env.float("AGENT_DEADLINE_FACTOR", default=6.0)  # x typical duration
AGENT_SUBMIT_MAX_ATTEMPTS = env.int("AGENT_SUBMIT_MAX_ATTEMPTS", default=8)
# The sync with bitHuman (agents/sync.py): seconds between passes, and pages of 100 agents it
# reads per organization at most (more agents: prompt changes only, no deletion marks).
AGENT_SYNC_INTERVAL = env.float("AGENT_SYNC_INTERVAL", default=300.0)
AGENT_SYNC_MAX_PAGES = env.int("AGENT_SYNC_MAX_PAGES", default=20)
CELERY_BEAT_SCHEDULE |= {
    "agents-poll": {
        "task": "agents.tasks.agents_poll_tick",
        "schedule": timedelta(seconds=AGENT_POLL_TICK),
        # A backlog of ticks (worker busy or down) is dropped, not replayed.
        "options": {"expires": AGENT_POLL_TICK},
    },
    "agents-submit-sweep": {
        "task": "agents.tasks.agents_submit_sweep",
        "schedule": timedelta(seconds=30),
        "options": {"expires": 30},
    },
    "agents-sync": {
        "task": "agents.tasks.agents_sync",
        "schedule": timedelta(seconds=AGENT_SYNC_INTERVAL),
        "options": {"expires": AGENT_SYNC_INTERVAL},
    },
    "agents-pending-uploads-purge": {
        "task": "agents.tasks.pending_uploads_purge",
        "schedule": timedelta(minutes=10),
        "options": {"expires": 600},
    },
}

# --- REST API -------------------------------------------------------------------------------------
API_RATE_LIMIT_PER_MINUTE = env.int("API_RATE_LIMIT_PER_MINUTE", default=600)  # per key

# --- Sessions: live rooms and the operator console ----------------------------------------------
# A live session with no start, speak or add-context for this long is ended by the idle sweep.
SESSION_IDLE_MINUTES = env.int("SESSION_IDLE_MINUTES", default=30)
# The link that opens a LiveKit session's room in a browser; {url} is the organization's LiveKit
# server URL and {token} a participant token (both URL-encoded). Its host is allowed to be framed
# on the session page (CSP frame-src), read at startup.
LIVEKIT_ROOM_LINK_TEMPLATE = env.str(
    "LIVEKIT_ROOM_LINK_TEMPLATE",
    default="https://meet.livekit.io/custom?liveKitUrl={url}&token={token}",
)
# Models added to ready agents, followed until bitHuman lists them (agents.model_adds).
CELERY_BEAT_SCHEDULE["agents-model-adds"] = {
    "task": "agents.tasks.agents_model_adds_refresh",
    "schedule": timedelta(minutes=1),
    "options": {"expires": 60},
}
CELERY_BEAT_SCHEDULE["sessions-end-idle"] = {
    "task": "sessions.tasks.sessions_end_idle",
    "schedule": timedelta(minutes=1),
    "options": {"expires": 60},
}
# Link live sessions to the runtime sessions bitHuman lists (one Read call per organization
# with unlinked live sessions), and retry terminates bitHuman has not confirmed.
SESSION_LINK_SECONDS = env.int("SESSION_LINK_SECONDS", default=10)
CELERY_BEAT_SCHEDULE["sessions-link-pending"] = {
    "task": "sessions.tasks.sessions_link_pending",
    "schedule": timedelta(seconds=SESSION_LINK_SECONDS),
    "options": {"expires": SESSION_LINK_SECONDS},
}
# Pull visitor and avatar lines of bitHuman's transcripts into linked sessions' timelines:
# a live session at most this often (one Read call each, within the account's Read budget),
# an ended one once. The account-wide live sessions page caches bitHuman's list this long too.
SESSION_TRANSCRIPT_SECONDS = env.int("SESSION_TRANSCRIPT_SECONDS", default=15)
LIVE_SESSIONS_CACHE_SECONDS = env.int("LIVE_SESSIONS_CACHE_SECONDS", default=10)
CELERY_BEAT_SCHEDULE["sessions-transcripts-pull"] = {
    "task": "sessions.tasks.sessions_transcripts_pull",
    "schedule": timedelta(seconds=5),
    "options": {"expires": 5},
}
CELERY_BEAT_SCHEDULE["sessions-upstream-end-sweep"] = {
    "task": "sessions.tasks.sessions_upstream_end_sweep",
    "schedule": timedelta(minutes=1),
    "options": {"expires": 60},
}

# --- Activity: outbound webhooks to customers' systems --------------------------------------------
WEBHOOK_TIMEOUT = env.float("WEBHOOK_TIMEOUT", default=10.0)  # seconds per delivery attempt
# Waits (seconds) after each failed attempt: 8 attempts over about 24 h, then the delivery fails.
WEBHOOK_RETRY_SCHEDULE = (60, 300, 1800, 7200, 18000, 28800, 28800)
WEBHOOK_DISABLE_AFTER_DAYS = env.int("WEBHOOK_DISABLE_AFTER_DAYS", default=3)
WEBHOOK_SECRET_OVERLAP_HOURS = env.int("WEBHOOK_SECRET_OVERLAP_HOURS", default=24)
# Allow http:// and local addresses as webhook URLs: tests and local receivers only.
WEBHOOK_ALLOW_LOCAL = env.bool("WEBHOOK_ALLOW_LOCAL", default=False)
CELERY_BEAT_SCHEDULE["webhooks-sweep"] = {
    "task": "activity.tasks.outbound_deliveries_sweep",
    "schedule": timedelta(minutes=1),
    "options": {"expires": 60},
}

# --- Logging ------------------------------------------------------------------------------------
# JSON lines in production (LOG_FORMAT=json), a readable line locally; both carry the request
# id, organization, user or API key, task id and agent/session ids (portal/logging.py).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured("LOG_FORMAT must be json or plain.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "portal.logging.ContextFilter"}},
    "formatters": {
        "plain": {"()": "portal.logging.PlainFormatter"},
        "json": {"()": "portal.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "axes": {"level": "WARNING"},
        # The portal logs every request itself (portal.request, with its id and context).
        "django.server": {"level": "WARNING"},
    },
}
# Celery keeps Django's handlers (it would otherwise replace the root logger's).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
