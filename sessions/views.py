"""Live session pages. The list is an empty state until the sessions issue lands."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from portal.models import Membership
from portal.tenancy import org_view


@require_GET
@org_view()
def session_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    return render(request, "sessions/list.html", {"sessions": []})
