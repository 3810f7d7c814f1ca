"""Pages of the tenancy core: sign up, organizations, members, invitations, settings, account.

Views are thin: resolve (tenancy.org_view), call a service, respond. Objects inside an
organization are always fetched through their app's selectors (`membership_get`, ...), which
answer NotFound (a 404) for a missing, foreign or malformed id.
"""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from organizations import (
    apikeys,
    connections,
    invitations,
    selectors,
    services,
    twofactor,
)
from organizations.account_views import base_url_of
from organizations.forms import (
    ApiKeyForm,
    InviteForm,
    LiveConnectionForm,
    OrganizationDeleteForm,
    OrganizationForm,
    RoleForm,
)
from portal.confirm import confirm_page, confirmed
from portal.errors import ApplicationError
from portal.forms import error_show
from portal.models import ApiKey, BithumanConnection, Invitation, Membership
from portal.tenancy import Role, org_view, role_at_least

AUTH_BACKEND = "portal.backends.EmailBackend"


# --- Organization pages -------------------------------------------------------------------------


@org_view({"GET": Role.VIEWER})
def members(request: HttpRequest, membership: Membership) -> HttpResponse:
    return _members_page(request, membership)


def _members_page(
    request: HttpRequest,
    membership: Membership,
    invite_form: InviteForm | None = None,
    status: int = 200,
) -> HttpResponse:
    org = membership.organization
    can_manage = role_at_least(membership.role, Role.ADMIN)
    rows = []
    for member in selectors.membership_list(org=org):
        manageable = can_manage and role_at_least(membership.role, member.role)
        rows.append(
            {
                "membership": member,
                "is_me": member.pk == membership.pk,
                "can_manage": manageable and member.pk != membership.pk,
                "role_form": RoleForm(initial={"role": member.role}, actor_role=membership.role)
                if manageable
                else None,
            }
        )
    context = {
        "rows": rows,
        "can_manage": can_manage,
        "invitations": selectors.invitation_list_open(org=org) if can_manage else [],
        "invite_form": invite_form or InviteForm(actor_role=membership.role),
    }
    return render(request, "portal/members.html", context, status=status)


@org_view({"POST": Role.ADMIN})
def member_invite(request: HttpRequest, membership: Membership) -> HttpResponse:
    form = InviteForm(request.POST, actor_role=membership.role)
    if form.is_valid():
        try:
            issued = invitations.invitation_create(
                actor=membership,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                base_url=base_url_of(request),
            )
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            messages.success(request, f"Invitation sent to {issued.invitation.email}.")
            return redirect("members", org_slug=membership.organization.slug)
    return _members_page(request, membership, invite_form=form, status=400)


def _member_get(membership: Membership, member_id: UUID) -> Membership:
    return selectors.membership_get(org=membership.organization, public_id=member_id)


@org_view({"POST": Role.ADMIN})
def member_role(request: HttpRequest, membership: Membership, member_id: UUID) -> HttpResponse:
    target = _member_get(membership, member_id)
    form = RoleForm(request.POST, actor_role=membership.role)
    if not form.is_valid():
        messages.error(request, "You cannot grant that role.")
    else:
        try:
            services.membership_role_change(
                actor=membership, target=target, role=form.cleaned_data["role"]
            )
        except ApplicationError as error:
            error_show(request, error)
        else:
            messages.success(request, f"{target.user.email} is now {target.get_role_display()}.")
    return redirect("members", org_slug=membership.organization.slug)


@org_view({"GET": Role.ADMIN, "POST": Role.VIEWER})  # anyone may leave; the service checks
def member_remove(request: HttpRequest, membership: Membership, member_id: UUID) -> HttpResponse:
    """GET: what removing this member does (their pending invitations are revoked; the API keys
    they created are listed, to revoke with one click or keep). POST: do it."""
    target = _member_get(membership, member_id)
    org = membership.organization
    leaving = target.pk == membership.pk
    if request.method == "GET" or not confirmed(request):
        if leaving and request.method == "POST":
            return confirm_page(
                request,
                title=f"Leave {org.name}?",
                message="You lose access to its agents, sessions and settings until someone "
                "invites you again.",
                button="Leave organization",
                cancel_url=reverse("members", args=[org.slug]),
            )
        if leaving or not role_at_least(membership.role, target.role):
            return redirect("members", org_slug=org.slug)
        # Removing someone else: the confirm step lists what goes with them.
        context = {
            "target": target,
            "api_keys": services.member_api_keys(target=target),
            "invitations": selectors.invitations_sent_by(member=target),
        }
        return render(request, "portal/member_remove.html", context)
    try:
        removed = services.membership_remove(
            actor=membership,
            target=target,
            revoke_api_keys=request.POST.get("api_keys") == "revoke",
        )
    except ApplicationError as error:
        error_show(request, error)
        return redirect("members", org_slug=membership.organization.slug)
    if target.pk == membership.pk:
        messages.success(request, f"You left {membership.organization.name}.")
        request.session.pop("last_org", None)
        return redirect("home")
    text = f"Removed {target.user.email}."
    if removed.invitations_revoked:
        text += f" Their {removed.invitations_revoked} pending invitation(s) were revoked."
    if removed.api_keys:
        count = len(removed.api_keys)
        text += (
            f" The {count} API key(s) they created were revoked."
            if removed.api_keys_revoked
            else f" The {count} API key(s) they created still work (Settings lists them)."
        )
    messages.success(request, text)
    return redirect("members", org_slug=membership.organization.slug)


def _invitation_get(membership: Membership, invitation_id: UUID) -> Invitation:
    return selectors.invitation_get(org=membership.organization, public_id=invitation_id)


@org_view({"POST": Role.ADMIN})
def invitation_resend(
    request: HttpRequest, membership: Membership, invitation_id: UUID
) -> HttpResponse:
    invitation = _invitation_get(membership, invitation_id)
    try:
        invitations.invitation_resend(
            actor=membership, invitation=invitation, base_url=base_url_of(request)
        )
    except ApplicationError as error:
        error_show(request, error)
    else:
        messages.success(request, f"Invitation resent to {invitation.email}.")
    return redirect("members", org_slug=membership.organization.slug)


@org_view({"POST": Role.ADMIN})
def invitation_revoke(
    request: HttpRequest, membership: Membership, invitation_id: UUID
) -> HttpResponse:
    invitation = _invitation_get(membership, invitation_id)
    if not confirmed(request):
        return confirm_page(
            request,
            title=f"Revoke the invitation to {invitation.email}?",
            message="The link in their email stops working. You can invite them again later.",
            button="Revoke invitation",
            cancel_url=reverse("members", args=[membership.organization.slug]),
        )
    try:
        invitations.invitation_revoke(actor=membership, invitation=invitation)
    except ApplicationError as error:
        error_show(request, error)
    else:
        messages.success(request, f"Invitation to {invitation.email} revoked.")
    return redirect("members", org_slug=membership.organization.slug)


def _settings_page(
    request: HttpRequest,
    membership: Membership,
    form: OrganizationForm | None = None,
    delete_form: OrganizationDeleteForm | None = None,
    live_form: LiveConnectionForm | None = None,
    api_key_form: ApiKeyForm | None = None,
    status: int = 200,
) -> HttpResponse:
    org = membership.organization
    connection = connections.connection_get(org=org)
    context = {
        "form": form or OrganizationForm(initial={"name": org.name}),
        "delete_form": delete_form or OrganizationDeleteForm(),
        "live_form": live_form or LiveConnectionForm(),
        "is_owner": membership.role == Role.OWNER,
        "connection": connection,
        "account": connections.connection_account(connection=connection),
        "receiver_url": _receiver_url(request, connection),
        "api_keys": ApiKey.objects.for_org(org).select_related("created_by"),
        "api_key_form": api_key_form or ApiKeyForm(),
        "new_api_key": request.session.pop(NEW_API_KEY_SESSION, None),
    }
    return render(request, "portal/org_settings.html", context, status=status)


@org_view({"GET": Role.ADMIN, "POST": Role.OWNER})
def org_settings(request: HttpRequest, membership: Membership) -> HttpResponse:
    if request.method != "POST":
        return _settings_page(request, membership)
    form = OrganizationForm(request.POST)
    if form.is_valid():
        try:
            services.organization_rename(actor=membership, name=form.cleaned_data["name"])
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            messages.success(request, "Settings saved.")
            return redirect("org_settings", org_slug=membership.organization.slug)
    return _settings_page(request, membership, form=form, status=400)


@org_view({"POST": Role.OWNER})
def org_two_factor(request: HttpRequest, membership: Membership) -> HttpResponse:
    try:
        twofactor.organization_require(
            actor=membership,
            required=request.POST.get("require_two_factor") == "on",
            actor_verified=request.user.is_verified(),  # type: ignore[union-attr]
        )
    except ApplicationError as error:
        error_show(request, error)
    else:
        messages.success(request, "Two-factor sign-in settings saved.")
    return redirect(reverse("org_settings", args=[membership.organization.slug]) + "#security")


@org_view({"POST": Role.OWNER})
def org_delete(request: HttpRequest, membership: Membership) -> HttpResponse:
    form = OrganizationDeleteForm(request.POST)
    if form.is_valid():
        name = membership.organization.name
        try:
            services.organization_delete(
                actor=membership, confirm_slug=form.cleaned_data["confirm"]
            )
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            request.session.pop("last_org", None)
            messages.success(request, f"Deleted {name}.")
            return redirect("home")
    return _settings_page(request, membership, delete_form=form, status=400)


def _receiver_url(request: HttpRequest, connection: BithumanConnection) -> str:
    return request.build_absolute_uri(
        reverse("bithuman_webhook", kwargs={"receiver_token": connection.receiver_token})
    )


@org_view({"POST": Role.ADMIN})
def connection_live(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Save a live bitHuman secret (validated first) and register our webhook."""
    form = LiveConnectionForm(request.POST)
    if form.is_valid():
        connection = connections.connection_get(org=membership.organization)
        try:
            saved = connections.connection_live_save(
                actor=membership,
                api_secret=form.cleaned_data["api_secret"],
                receiver_url=_receiver_url(request, connection),
            )
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            messages.success(request, "Live mode is on: the portal now uses your bitHuman account.")
            if not saved.webhook_registered:
                messages.warning(
                    request,
                    "bitHuman did not register the portal's webhook "
                    f"({saved.webhook_problem or 'no reason given'}); status updates will come "
                    "from polling only.",
                )
            return redirect("org_settings", org_slug=membership.organization.slug)
    return _settings_page(request, membership, live_form=form, status=400)


@org_view({"POST": Role.ADMIN})
def connection_test(request: HttpRequest, membership: Membership) -> HttpResponse:
    connections.connection_test_use(actor=membership)
    messages.success(request, "Test mode is on: the portal now uses the sandbox.")
    return redirect("org_settings", org_slug=membership.organization.slug)


NEW_API_KEY_SESSION = "new_api_key"


@org_view({"POST": Role.ADMIN})
def api_key_create(request: HttpRequest, membership: Membership) -> HttpResponse:
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            issued = apikeys.api_key_create_by(
                actor=membership,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=form.cleaned_data["expires_at"],
            )
        except ApplicationError as error:
            error_show(request, error, form=form)
        else:
            # Shown once, on the next page only: the session forgets it when it is displayed.
            request.session[NEW_API_KEY_SESSION] = {"name": issued.api_key.name, "key": issued.key}
            return redirect(
                reverse("org_settings", args=[membership.organization.slug]) + "#api-keys"
            )
    return _settings_page(request, membership, api_key_form=form, status=400)


@org_view({"POST": Role.ADMIN})
def api_key_revoke(request: HttpRequest, membership: Membership, key_id: UUID) -> HttpResponse:
    api_key = selectors.api_key_get(org=membership.organization, public_id=key_id)
    if not confirmed(request):
        return confirm_page(
            request,
            title=f"Revoke the API key {api_key.name}?",
            message=f"Requests with {api_key.display} are refused at once. This cannot be undone: "
            "systems using it need a new key.",
            button="Revoke key",
            cancel_url=reverse("org_settings", args=[membership.organization.slug]) + "#api-keys",
        )
    apikeys.api_key_revoke(actor=membership, api_key=api_key)
    messages.success(request, f"Revoked the key {api_key.name}. It stops working at once.")
    return redirect(reverse("org_settings", args=[membership.organization.slug]) + "#api-keys")
