"""Make the client's address of the current request known to `audit_record` (services that
write audit entries never see the request)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from activity import services
from portal.clientip import client_ip


class AuditRequestMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = services.request_ip.set(client_ip(request))
        try:
            return self.get_response(request)
        finally:
            services.request_ip.reset(token)
