from typing import Any

from django.http import HttpRequest

from portal import selectors


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
