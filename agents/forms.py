"""Agent forms: input shape only. Pre-flight checks and rules live in preflight.py/services.py."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from django import forms

from agents.models import AgentModel, AspectRatio, Framing
from portal.forms import single_line


class AgentForm(forms.Form):
    # The form's own id becomes the agent's public id: a double click or a resubmitted form
    # finds the first agent instead of paying for a second one.
    submission_id = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)
    name = forms.CharField(label="Name", max_length=100, validators=[single_line])
    system_prompt = forms.CharField(
        label="Prompt",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Who the avatar is and how it talks. Required when there is no face image.",
    )
    model = forms.ChoiceField(
        label="Model", choices=AgentModel.choices, initial=AgentModel.EXPRESSION_1
    )
    aspect_ratio = forms.ChoiceField(label="Aspect ratio", choices=AspectRatio.choices)
    framing = forms.ChoiceField(label="Framing", choices=Framing.choices)
    transparency = forms.BooleanField(label="Transparent background", required=False)
    image = forms.FileField(
        label="Face image",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png,image/webp"}),
        help_text="One front-facing, well-lit person. JPEG, PNG or WebP, up to 10 MB.",
    )
    image_url = forms.URLField(
        label="Image link (https)", required=False, assume_scheme="https", max_length=1000
    )
    audio = forms.FileField(
        label="Voice sample",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": "audio/*"}),
        help_text="3-10 s of clean speech is best; under 60 s. WAV, MP3, M4A or OGG.",
    )
    audio_url = forms.URLField(
        label="Audio link (https)", required=False, assume_scheme="https", max_length=1000
    )

    def __init__(
        self, *args: Any, model_choices: list[tuple[str, str]] | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        if model_choices:
            self.fields["model"].choices = model_choices  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        return _media_pairs_check(self, super().clean() or {})


def _media_pairs_check(form: forms.Form, data: dict[str, Any]) -> dict[str, Any]:
    if data.get("image") and data.get("image_url"):
        form.add_error("image_url", "Give a face image file or a link, not both.")
    if data.get("audio") and data.get("audio_url"):
        form.add_error("audio_url", "Give a voice sample file or a link, not both.")
    return data


class PromptForm(forms.Form):
    system_prompt = forms.CharField(label="Prompt", widget=forms.Textarea(attrs={"rows": 6}))


class AgentDeleteForm(forms.Form):
    confirm = forms.CharField(label="Type the agent's name to confirm", max_length=100)


class RetryForm(forms.Form):
    """What a retry may replace (agents.retries): the same fields and checks as creation's;
    a field left empty keeps what the failed attempt used."""

    system_prompt = copy.deepcopy(AgentForm.base_fields["system_prompt"])
    image = copy.deepcopy(AgentForm.base_fields["image"])
    image_url = copy.deepcopy(AgentForm.base_fields["image_url"])
    audio = copy.deepcopy(AgentForm.base_fields["audio"])
    audio_url = copy.deepcopy(AgentForm.base_fields["audio_url"])

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["image"].label = "New face image"
        self.fields["image_url"].label = "or a new image link (https)"
        self.fields["audio"].label = "New voice sample"
        self.fields["audio_url"].label = "or a new audio link (https)"

    def clean(self) -> dict[str, Any]:
        return _media_pairs_check(self, super().clean() or {})
