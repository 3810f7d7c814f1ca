"""Form helpers every app's forms and views share: input shape only, rules live in services."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from portal.errors import ApplicationError, ErrorKind
from portal.text import ONE_LINE_MESSAGE, is_one_line


def apply_error(form: forms.Form, error: ApplicationError) -> None:
    """Show a domain error next to its field, or at the top of the form."""
    field = error.field if error.field in form.fields else None
    form.add_error(field, error.message)


def error_show(
    request: HttpRequest, error: ApplicationError, *, form: forms.Form | None = None
) -> None:
    """The one way a page shows a domain error it caught (the API's is portal.apisupport's
    api_error_for). Not found is re-raised: the page answers 404 like any missing object. Any
    other kind goes next to its field of `form` (or at the form's top), or, without a form, into
    a message for the page the view redirects to. The view keeps its own status and redirect."""
    if error.kind == ErrorKind.NOT_FOUND:
        raise error
    message = error.message
    request_id = error.extra.get("upstream_request_id")
    if request_id:
        # bitHuman's X-Request-Id of the refused call, beside the error.
        message += f" (bitHuman request id {request_id}: quote this to bitHuman support.)"
    if form is not None:
        form.add_error(error.field if error.field in form.fields else None, message)
    else:
        messages.error(request, message)


def single_line(value: str) -> None:
    """A name shown in titles, email subjects and bodies: one line (portal.text)."""
    if not is_one_line(value):
        raise ValidationError(ONE_LINE_MESSAGE)
