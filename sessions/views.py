"""Live session pages. The list is an empty state until the sessions issue lands."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.models import Membership
from portal.tenancy import Role, org_view


@org_view({"GET": Role.VIEWER})
def session_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    return render(request, "sessions/list.html", {"sessions": []})
