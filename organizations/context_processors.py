import time
from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from organizations import selectors


def organizations(request: HttpRequest) -> dict[str, Any]:
    """The header's organization switcher: the user's memberships and the current one."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "user_memberships": list(selectors.membership_list_for_user(user=user)),
        "current_org": getattr(request, "organization", None),
        "current_membership": getattr(request, "membership", None),
    }


def impersonation(request: HttpRequest) -> dict[str, Any]:
    """The banner of a staff member impersonating someone (organizations.impersonation)."""
    data = getattr(request, "impersonation", None)
    if not data:
        return {}
    return {
        "impersonation": {
            **data,
            "minutes_left": max(0, int((data["expires"] - time.time()) // 60)),
            "stop_url": reverse("impersonation_stop"),
        }
    }
