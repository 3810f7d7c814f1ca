"""The Usage page (admins and above): the organization's spend, the account's balance and
runway. Thin: agents.usage reads and computes."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from agents import usage
from portal.models import Membership
from portal.tenancy import Role, org_view


def _days(request: HttpRequest) -> int:
    try:
        days = int(request.GET.get("days", usage.DEFAULT_PERIOD))
    except ValueError:
        return usage.DEFAULT_PERIOD
    return days if days in usage.PERIODS else usage.DEFAULT_PERIOD


@org_view({"GET": Role.ADMIN})
def usage_page(request: HttpRequest, membership: Membership) -> HttpResponse:
    report = usage.usage_report(org=membership.organization, days=_days(request))
    return render(
        request,
        "agents/usage.html",
        {
            "report": report,
            "chart": report.chart(),
            "periods": usage.PERIODS,
            "max_events": usage.PAGE_LIMIT * usage.MAX_PAGES,
        },
    )
