"""The "Import from bitHuman" page (agents.imports): the account's agents not yet in the
organization, chosen with checkboxes and brought in (admins and above)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from agents import imports
from portal.errors import ApplicationError, ErrorKind
from portal.forms import error_show
from portal.models import Membership
from portal.tenancy import Role, org_view


def _page(
    request: HttpRequest,
    membership: Membership,
    *,
    chosen: list[str] | None = None,
    problems: dict[str, dict[str, str]] | None = None,
    status: int = 200,
) -> HttpResponse:
    listing: imports.ImportableList | None = None
    error = ""
    try:
        listing = imports.importable_list(actor=membership)
    except ApplicationError as failure:
        if failure.kind == ErrorKind.FORBIDDEN:
            raise
        error = failure.message
    context = {
        "listing": listing,
        "list_error": error,
        "chosen": set(chosen or []),
        "problems": problems or {},
        "live": membership.organization.bithuman_connection.is_live
        if hasattr(membership.organization, "bithuman_connection")
        else False,
    }
    return render(request, "agents/import.html", context, status=status)


@org_view({"GET": Role.ADMIN, "POST": Role.ADMIN})
def agent_import(request: HttpRequest, membership: Membership) -> HttpResponse:
    if request.method != "POST":
        return _page(request, membership)
    codes = [code for code in request.POST.getlist("codes") if code.strip()]
    try:
        imported = imports.agents_import(actor=membership, codes=codes)
    except imports.ImportRefused as refused:
        return _page(request, membership, chosen=codes, problems=refused.problems, status=400)
    except ApplicationError as error:
        error_show(request, error)
        return _page(request, membership, chosen=codes, status=400)
    names = ", ".join(agent.name for agent in imported)
    messages.success(
        request, f"Imported {len(imported)} agent{'s' if len(imported) != 1 else ''}: {names}."
    )
    if len(imported) == 1:
        return redirect(
            reverse("agent_detail", args=[membership.organization.slug, imported[0].public_id])
        )
    return redirect("agent_list", org_slug=membership.organization.slug)
