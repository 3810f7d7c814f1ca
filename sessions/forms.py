"""Session forms: input shape and limits only. Rules live in services.py."""

from __future__ import annotations

from typing import Any

from django import forms

from sessions.models import (
    CONTEXT_MAX_CHARS,
    DEFAULT_LIVEKIT_AGENT_NAME,
    QUICK_REPLY_MAX_CHARS,
    SPEAK_MAX_CHARS,
    SessionKind,
)


class MessageField(forms.CharField):
    """Text from a textarea, with browser line endings (CRLF) counted as one character, as the
    browser's own maxlength counts them."""

    def to_python(self, value: Any) -> str:
        return str(super().to_python(value)).replace("\r\n", "\n")


def _limited_text(
    *, label: str, name: str, limit: int, empty: str, rows: int, **attrs: Any
) -> MessageField:
    return MessageField(
        label=label,
        max_length=limit,
        widget=forms.Textarea(attrs={"rows": rows, "data-enter-sends": "", **attrs}),
        error_messages={
            "required": empty,
            "max_length": f"{name} text is limited to {limit:,} characters "
            "(this has %(show_value)d).",
        },
    )


class SpeakForm(forms.Form):
    message = _limited_text(
        label="Speak",
        name="Speak",
        limit=SPEAK_MAX_CHARS,
        empty="Type what the avatar says first.",
        rows=2,
        placeholder="The avatar says this now. Enter sends, Shift+Enter adds a line.",
    )


class ContextForm(forms.Form):
    context = _limited_text(
        label="Add context",
        name="Context",
        limit=CONTEXT_MAX_CHARS,
        empty="Type the context first.",
        rows=3,
        placeholder="Background the agent uses in its next replies (not spoken).",
    )


class QuickReplyForm(forms.Form):
    reply = forms.CharField(
        label="New quick reply",
        max_length=QUICK_REPLY_MAX_CHARS,
        error_messages={"required": "Type the quick reply first."},
    )


class StartForm(forms.Form):
    kind = forms.ChoiceField(
        label="Room",
        choices=SessionKind.choices,
        initial=SessionKind.HOSTED,
        widget=forms.RadioSelect,
    )

    def __init__(self, *args: Any, livekit_ready: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not livekit_ready:
            # LiveKit rooms need the organization's LiveKit project (Settings).
            self.fields["kind"].choices = [  # type: ignore[attr-defined]
                (SessionKind.HOSTED.value, SessionKind.HOSTED.label)
            ]


class LiveKitConfigForm(forms.Form):
    url = forms.CharField(
        label="LiveKit URL",
        max_length=300,
        help_text="Your LiveKit server, e.g. wss://your-project.livekit.cloud",
    )
    api_key = forms.CharField(label="API key", max_length=200)
    api_secret = forms.CharField(
        label="API secret",
        max_length=500,
        required=False,
        strip=True,
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="Stored encrypted. Leave empty to keep the saved secret.",
    )
    agent_name = forms.CharField(
        label="Agent name",
        max_length=128,
        required=False,
        initial=DEFAULT_LIVEKIT_AGENT_NAME,
        help_text=(
            "The agent_name your LiveKit worker registers with; the portal dispatches it into "
            "each room. Empty: bithuman-avatar, what examples/livekit_worker registers as."
        ),
    )


class RevokeAllForm(forms.Form):
    """The owner's emergency stop: the organization's slug typed to confirm."""

    confirmation = forms.CharField(
        label="Type the organization's slug to confirm", max_length=60, strip=True
    )
    reason = forms.CharField(
        label="Reason (optional, sent to bitHuman)", max_length=300, required=False
    )
