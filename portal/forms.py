"""Form helpers every app's forms and views share: input shape only, rules live in services."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from portal.errors import ApplicationError
from portal.text import ONE_LINE_MESSAGE, is_one_line


def apply_error(form: forms.Form, error: ApplicationError) -> None:
    """Show a domain error next to its field, or at the top of the form."""
    field = error.field if error.field in form.fields else None
    form.add_error(field, error.message)


def single_line(value: str) -> None:
    """A name shown in titles, email subjects and bodies: one line (portal.text)."""
    if not is_one_line(value):
        raise ValidationError(ONE_LINE_MESSAGE)
