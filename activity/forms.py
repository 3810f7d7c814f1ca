"""Forms of the activity pages: input shape only; rules live in services."""

from __future__ import annotations

from django import forms

from activity.models import ActorKind, AuditAction, WebhookEvent
from portal.forms import single_line


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=254, label="Actor")
    actor_kind = forms.ChoiceField(
        required=False, choices=[("", "Any actor"), *ActorKind.choices], label="Kind"
    )
    action = forms.ChoiceField(
        required=False, choices=[("", "Any action"), *AuditAction.choices], label="Action"
    )
    target = forms.CharField(required=False, max_length=200, label="Target")
    since = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )


class WebhookEndpointForm(forms.Form):
    url = forms.URLField(
        label="URL", max_length=500, assume_scheme="https", help_text="A public https:// address."
    )
    description = forms.CharField(required=False, max_length=200, validators=[single_line])
    events = forms.MultipleChoiceField(
        choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple
    )
    enabled = forms.BooleanField(required=False, initial=True)
