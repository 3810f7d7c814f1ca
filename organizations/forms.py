"""Forms for people and organizations: input shape and field-level validation only. Rules live
in services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm

from portal.forms import single_line
from portal.models import ApiScope, User
from portal.tenancy import Role, roles_grantable_by


class LoginForm(AuthenticationForm):
    username = forms.EmailField(
        label="Email", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password do not match an account.",
    }


class NewPasswordMixin(forms.Form):
    password = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )

    def clean_password(self) -> str:
        password: str = self.cleaned_data["password"]
        email = str(self.cleaned_data.get("email") or getattr(self, "fixed_email", ""))
        password_validation.validate_password(password, User(email=email))
        return password


class SignupForm(NewPasswordMixin):
    full_name = forms.CharField(
        label="Your name", max_length=150, required=False, validators=[single_line]
    )
    email = forms.EmailField(
        label="Email", widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    organization_name = forms.CharField(
        label="Organization name", max_length=100, validators=[single_line]
    )

    field_order = ["full_name", "email", "password", "organization_name"]

    def clean_email(self) -> str:
        # Never "this email has an account": sign-up answers alike for every address.
        email: str = self.cleaned_data["email"].strip().lower()
        return email


class InvitationSignupForm(NewPasswordMixin):
    full_name = forms.CharField(
        label="Your name", max_length=150, required=False, validators=[single_line]
    )

    field_order = ["full_name", "password"]

    def __init__(self, *args: Any, fixed_email: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fixed_email = fixed_email


def _role_choices(actor_role: str) -> list[tuple[str, str]]:
    allowed = roles_grantable_by(actor_role)
    return [(value, label) for value, label in Role.choices if value in allowed]


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email")
    role = forms.ChoiceField(label="Role", choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args: Any, actor_role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = _role_choices(actor_role)  # type: ignore[attr-defined]


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices)

    def __init__(self, *args: Any, actor_role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = _role_choices(actor_role)  # type: ignore[attr-defined]


class OrganizationForm(forms.Form):
    name = forms.CharField(label="Organization name", max_length=100, validators=[single_line])


class OrganizationDeleteForm(forms.Form):
    confirm = forms.CharField(label="Type the organization's slug to confirm", max_length=60)


class AccountForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["full_name"]
        labels = {"full_name": "Your name"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["full_name"].validators.append(single_line)


class LiveConnectionForm(forms.Form):
    api_secret = forms.CharField(
        label="bitHuman API secret",
        max_length=500,
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="From your bitHuman account. It is checked with bitHuman before it is saved.",
    )


class ApiKeyForm(forms.Form):
    name = forms.CharField(label="Key name", max_length=100, validators=[single_line])
    scopes = forms.MultipleChoiceField(
        label="Scopes",
        choices=ApiScope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ApiScope.AGENTS_READ, ApiScope.SESSIONS_READ],
    )
    expires_at = forms.DateTimeField(
        label="Expires (optional)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )


class EmailForm(forms.Form):
    email = forms.EmailField(
        label="Email", widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )


class OtpForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=20,
        help_text="The 6 digits your authenticator app shows, or one of your recovery codes.",
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}
        ),
    )
