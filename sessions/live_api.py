"""The bitHuman account's live sessions over REST (the live sessions page's list and Terminate).

Keys carry scopes, not roles: only admins issue keys, so a key with `live_sessions:read` /
`live_sessions:write` acts with an admin's rights for these operations. Revoking all runtime
keys is for owners only and stays on the page."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field

from portal.apisupport import scope_require
from portal.models import ApiScope
from portal.tenancy import ApiKeyActor, Role
from sessions import live_sessions

router = Router(tags=["live sessions"])


class RuntimeSessionOut(Schema):
    id: str = Field(description="bitHuman's runtime session id (terminate it by this id).")
    status: str | None = Field(description="live, idle or ended (bitHuman's word).")
    agent_code: str | None = Field(description="bitHuman's agent code.")
    agent_name: str | None = Field(description="bitHuman's name of the agent.")
    agent_id: str | None = Field(
        description="The organization's agent with this code; null when it is not one of its."
    )
    session_id: str | None = Field(
        description="The portal session linked to it; null when it was started outside the "
        "portal (your website's embed, your own LiveKit worker)."
    )
    room_name: str | None = Field(description="The room's name at bitHuman.")
    started: Any | None = Field(description="When it started.")
    last_seen: Any | None = Field(description="When bitHuman last saw it.")
    minutes: float | None = Field(description="Minutes so far.")
    credits: float | None = Field(description="Credits so far.")
    burn_rate_cr_per_min: float | None = Field(description="Credits a minute while live.")
    has_transcript: bool | None = Field(description="Whether bitHuman recorded a transcript.")


class LiveSessionsOut(Schema):
    active_count: int | None = Field(description="Sessions live on the account (last hour).")
    live_burn_rate_cr_per_min: float | None = Field(description="Credits a minute, all live.")
    credits_this_hour: float | None = Field(description="Credits used over the last hour.")
    fetched_at: Any = Field(description="When bitHuman gave this list (cached a few seconds).")
    stale_reason: str | None = Field(
        description="Set when this is an older list because bitHuman could not be asked now."
    )
    items: list[RuntimeSessionOut] = Field(description="Live and recent sessions, newest first.")


class TerminatedOut(Schema):
    id: str = Field(description="The runtime session terminated.")
    terminated: bool = Field(description="Always true: bitHuman ended it.")
    note: str = Field(description="bitHuman's note.")


def _actor(request: HttpRequest, scope: str) -> ApiKeyActor:
    return ApiKeyActor(api_key=scope_require(request, scope), role=Role.ADMIN)


@router.get("", response=LiveSessionsOut, summary="The bitHuman account's live and recent sessions")
def live_session_list(request: HttpRequest) -> dict[str, Any]:
    listing = live_sessions.live_sessions_get(actor=_actor(request, ApiScope.LIVE_SESSIONS_READ))
    return {
        "active_count": listing.active_count,
        "live_burn_rate_cr_per_min": listing.live_burn_rate,
        "credits_this_hour": listing.credits_this_hour,
        "fetched_at": listing.fetched_at,
        "stale_reason": listing.stale_reason or None,
        "items": [
            {
                **row.runtime.model_dump(
                    include={
                        "id",
                        "status",
                        "agent_code",
                        "agent_name",
                        "room_name",
                        "started",
                        "last_seen",
                        "minutes",
                        "credits",
                        "burn_rate_cr_per_min",
                        "has_transcript",
                    }
                ),
                "agent_id": str(row.agent.public_id) if row.agent else None,
                "session_id": str(row.session.public_id) if row.session else None,
            }
            for row in listing.rows
        ],
    }


@router.post(
    "/{runtime_session_id}/terminate",
    response=TerminatedOut,
    summary="Terminate one live session of the account",
)
def live_session_terminate(request: HttpRequest, runtime_session_id: str) -> dict[str, Any]:
    actor = _actor(request, ApiScope.LIVE_SESSIONS_WRITE)
    note = live_sessions.live_session_terminate(actor=actor, runtime_session_id=runtime_session_id)
    return {"id": runtime_session_id, "terminated": True, "note": note}
