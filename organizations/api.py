"""API operations about the key's organization."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field

from organizations import connections
from portal.apisupport import api_key_of

router = Router(tags=["organization"])


class OrganizationOut(Schema):
    slug: str = Field(description="The organization's short name in portal URLs.")
    name: str = Field(description="The organization's name.")
    mode: str = Field(
        description="test (the sandbox, nothing billed) or live (your bitHuman account)."
    )


@router.get("", response=OrganizationOut, summary="The key's organization")
def organization_get(request: HttpRequest) -> dict[str, str]:
    api_key = api_key_of(request)
    org = api_key.organization
    connection = connections.connection_get(org=org)
    return {"slug": org.slug, "name": org.name, "mode": connection.mode}
