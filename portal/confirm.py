"""One confirmation pattern for destructive or hard-to-undo actions.

The action's button posts to the action's URL. Without `confirmed=yes` the view answers with a
confirmation page (200) that changes nothing: it says what will happen and repeats the post with
`confirmed=yes` (other posted fields carried along), next to a Cancel link. This works without
JavaScript; app.js turns it into an in-page dialog when it can. Deleting an organization or an
agent asks for its typed name instead (on their own pages)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

CONFIRM_FIELD = "confirmed"


def confirmed(request: HttpRequest) -> bool:
    return request.method == "POST" and request.POST.get(CONFIRM_FIELD) == "yes"


def confirm_page(
    request: HttpRequest,
    *,
    title: str,
    message: str,
    button: str,
    cancel_url: str,
    danger: bool = True,
) -> HttpResponse:
    """The confirmation step: `title` asks the question ("Remove ana@example.com?"), `message`
    says what happens, `button` repeats the action's verb ("Remove member")."""
    carried = [
        (name, value)
        for name, values in request.POST.lists()
        if name not in ("csrfmiddlewaretoken", CONFIRM_FIELD)
        for value in values
    ]
    return render(
        request,
        "confirm.html",
        {
            "title": title,
            "message": message,
            "button": button,
            "cancel_url": cancel_url,
            "danger": danger,
            "carried": carried,
            "action_url": request.get_full_path(),
        },
    )
