"""Pages of the activity app: the audit log (admins), its CSV export, and webhook endpoints
with their delivery logs. The dashboard is the organization home (interfaces.views.org_home)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from activity import audit_display, outbound, selectors, services
from activity.forms import AuditFilterForm, WebhookEndpointForm
from activity.models import AuditEvent, WebhookEndpoint
from portal.confirm import confirm_page, confirmed
from portal.errors import ApplicationError
from portal.forms import error_show
from portal.models import Membership
from portal.tenancy import Role, org_view

PAGE_SIZE = 50


def _filters(request: HttpRequest) -> tuple[AuditFilterForm, selectors.AuditFilters]:
    form = AuditFilterForm(request.GET or None)
    if form.is_bound and form.is_valid():
        return form, selectors.AuditFilters(**form.cleaned_data)
    return form, selectors.AuditFilters()


@org_view({"GET": Role.ADMIN})
def audit_log(request: HttpRequest, membership: Membership) -> HttpResponse:
    form, filters = _filters(request)
    events = selectors.audit_event_list(org=membership.organization, filters=filters)
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = audit_display.audit_rows(org=membership.organization, events=list(page.object_list))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "activity/audit_log.html",
        {"form": form, "page": page, "rows": rows, "query": query.urlencode()},
    )


def _csv_cell(value: Any) -> str:
    """Text a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(events: Any) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(
        [
            "time",
            "actor_kind",
            "actor",
            "action",
            "action_name",
            "target_type",
            "target_kind",
            "target_id",
            "target",
            "details",
            "ip_address",
        ]
    )
    for event in events.iterator(chunk_size=2000):
        event: AuditEvent  # type: ignore[no-redef]
        yield writer.writerow(
            [
                _csv_cell(v)
                for v in (
                    event.created_at.isoformat(),
                    event.actor_kind,
                    event.actor_label,
                    event.action,
                    event.get_action_display(),
                    event.target_type,
                    audit_display.target_name(event.target_type) if event.target_type else "",
                    event.target_id,
                    event.target_label,
                    audit_display.details_json(event.details),
                    event.ip_address,
                )
            ]
        )


@org_view({"GET": Role.ADMIN})  # type: ignore[arg-type]  # a streamed CSV
def audit_export(request: HttpRequest, membership: Membership) -> StreamingHttpResponse:
    _form, filters = _filters(request)
    events = selectors.audit_event_list(org=membership.organization, filters=filters)
    response = StreamingHttpResponse(_csv_rows(events), content_type="text/csv; charset=utf-8")
    name = f"audit-{membership.organization.slug}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# --- Webhooks -----------------------------------------------------------------------------------

# Ticked on a new endpoint: the outcomes people integrate first (session.message is chatty).
DEFAULT_EVENTS = ["agent.ready", "agent.failed", "session.started", "session.ended"]


def _endpoint_get(membership: Membership, endpoint_id: UUID) -> WebhookEndpoint:
    return selectors.webhook_endpoint_get(org=membership.organization, public_id=endpoint_id)


@org_view({"GET": Role.ADMIN, "POST": Role.ADMIN})
def webhook_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    org = membership.organization
    form = WebhookEndpointForm(
        request.POST or None, initial={"enabled": True, "events": DEFAULT_EVENTS}
    )
    if request.method == "POST" and form.is_valid():
        try:
            created = services.webhook_endpoint_create(
                actor=membership,
                url=form.cleaned_data["url"],
                events=form.cleaned_data["events"],
                description=form.cleaned_data["description"],
            )
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            return _detail_page(request, membership, created.endpoint, new_secret=created.secret)
    status = 400 if request.method == "POST" else 200
    endpoints = selectors.webhook_endpoint_list(org=org)
    return render(
        request,
        "activity/webhooks.html",
        {
            "form": form,
            "endpoints": endpoints,
            "event_types": services.EVENT_TYPES,
            "local_allowed": services.local_receivers_allowed(org),
        },
        status=status,
    )


def _detail_page(
    request: HttpRequest,
    membership: Membership,
    endpoint: WebhookEndpoint,
    *,
    form: WebhookEndpointForm | None = None,
    new_secret: str = "",
    status: int = 200,
) -> HttpResponse:
    form = form or WebhookEndpointForm(
        initial={
            "url": endpoint.url,
            "description": endpoint.description,
            "events": endpoint.events,
            "enabled": endpoint.enabled,
        }
    )
    page = Paginator(selectors.delivery_list(endpoint=endpoint), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "activity/webhook_detail.html",
        {
            "endpoint": endpoint,
            "form": form,
            "page": page,
            "new_secret": new_secret,
            "signing_secrets": len(outbound.signing_secrets(endpoint)),
        },
        status=status,
    )


@org_view({"GET": Role.ADMIN, "POST": Role.ADMIN})
def webhook_detail(request: HttpRequest, membership: Membership, endpoint_id: UUID) -> HttpResponse:
    endpoint = _endpoint_get(membership, endpoint_id)
    if request.method != "POST":
        return _detail_page(request, membership, endpoint)
    form = WebhookEndpointForm(request.POST)
    if form.is_valid():
        try:
            services.webhook_endpoint_update(
                actor=membership, endpoint=endpoint, **form.cleaned_data
            )
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            messages.success(request, "Saved the endpoint.")
            return redirect(_detail_url(membership, endpoint))
    endpoint.refresh_from_db()
    return _detail_page(request, membership, endpoint, form=form, status=400)


def _detail_url(membership: Membership, endpoint: WebhookEndpoint) -> str:
    return reverse("webhook_detail", args=[membership.organization.slug, endpoint.public_id])


@org_view({"POST": Role.ADMIN})
def webhook_rotate(request: HttpRequest, membership: Membership, endpoint_id: UUID) -> HttpResponse:
    endpoint = _endpoint_get(membership, endpoint_id)
    if not confirmed(request):
        return confirm_page(
            request,
            title=f"Rotate the signing secret of {endpoint.url}?",
            message="A new secret is shown once. The current one keeps signing too for "
            f"{settings.WEBHOOK_SECRET_OVERLAP_HOURS} hours, then deliveries are signed with the "
            "new one only: update your receiver before then.",
            button="Rotate secret",
            cancel_url=_detail_url(membership, endpoint),
        )
    secret = services.webhook_secret_rotate(actor=membership, endpoint=endpoint)
    return _detail_page(request, membership, endpoint, new_secret=secret)


@org_view({"POST": Role.ADMIN})
def webhook_test(request: HttpRequest, membership: Membership, endpoint_id: UUID) -> HttpResponse:
    endpoint = _endpoint_get(membership, endpoint_id)
    outbound.webhook_test_send(actor=membership, endpoint=endpoint)
    messages.success(request, "Sent a test event: its delivery is at the top of the log.")
    return redirect(_detail_url(membership, endpoint))


@org_view({"POST": Role.ADMIN})
def webhook_delete(request: HttpRequest, membership: Membership, endpoint_id: UUID) -> HttpResponse:
    endpoint = _endpoint_get(membership, endpoint_id)
    if not confirmed(request):
        return confirm_page(
            request,
            title=f"Delete the endpoint {endpoint.url}?",
            message="Events stop going there at once and its delivery log is deleted. "
            "This cannot be undone.",
            button="Delete endpoint",
            cancel_url=_detail_url(membership, endpoint),
        )
    services.webhook_endpoint_delete(actor=membership, endpoint=endpoint)
    messages.success(request, f"Deleted the endpoint {endpoint.url}.")
    return redirect("webhook_list", membership.organization.slug)


@org_view({"GET": Role.ADMIN})
def delivery_detail(
    request: HttpRequest, membership: Membership, delivery_id: UUID
) -> HttpResponse:
    """One delivery as sent and as answered: payload, headers, status and the body's start."""
    delivery = selectors.delivery_get(org=membership.organization, public_id=delivery_id)
    try:
        payload = json.dumps(json.loads(delivery.body), indent=2, ensure_ascii=False)
    except ValueError:
        payload = delivery.body
    return render(
        request,
        "activity/delivery_detail.html",
        {"delivery": delivery, "endpoint": delivery.endpoint, "payload": payload},
    )


@org_view({"POST": Role.ADMIN})
def delivery_resend(
    request: HttpRequest, membership: Membership, delivery_id: UUID
) -> HttpResponse:
    delivery = selectors.delivery_get(org=membership.organization, public_id=delivery_id)
    outbound.delivery_resend(actor=membership, delivery=delivery)
    messages.success(request, f"Resent {delivery.event_type} ({delivery.event_id}).")
    return redirect(_detail_url(membership, delivery.endpoint))
