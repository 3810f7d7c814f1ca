"""The only code that speaks HTTP to bitHuman: a typed client and its errors.

    from portal import bithuman

    with bithuman.BithumanClient(base_url=url, api_secret=secret) as client:
        started = client.agent_generate(prompt="...", image=image_url)
        status = client.agent_status_get(agent_id=started.agent_id)

Results live in `portal.bithuman.types`, errors in `portal.bithuman.errors`, webhook signatures in
`portal.bithuman.webhooks`. The modules: `core` (each operation described once as a `_Call`, the
response mapping and retry decisions), `client` (synchronous), `async_client`, `aio` (many
statuses at once over pooled connections, for the poller; running coroutines from sync code),
`control` (the sandbox's control endpoint, Test mode).
"""

from portal.bithuman.async_client import AsyncBithumanClient
from portal.bithuman.client import BithumanClient
from portal.bithuman.errors import (
    AccountSuspendedError,
    AgentNotFoundError,
    AuthenticationError,
    BithumanError,
    ConcurrencyLimitError,
    ConflictError,
    InsufficientCreditsError,
    MalformedResponseError,
    NoActiveRoomsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    SessionLimitError,
    TransportError,
    UpstreamError,
    ValidationError,
)
from portal.bithuman.types import AGENT_STATUSES, TERMINAL_STATUSES, AgentStatus

__all__ = [
    "AGENT_STATUSES",
    "TERMINAL_STATUSES",
    "AccountSuspendedError",
    "AgentNotFoundError",
    "AgentStatus",
    "AsyncBithumanClient",
    "AuthenticationError",
    "BithumanClient",
    "BithumanError",
    "ConcurrencyLimitError",
    "ConflictError",
    "InsufficientCreditsError",
    "MalformedResponseError",
    "NoActiveRoomsError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "SessionLimitError",
    "TransportError",
    "UpstreamError",
    "ValidationError",
]
