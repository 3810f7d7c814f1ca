"""Sign up, log in (by email, case-insensitive), log out, password change and reset, lockout."""

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from portal.models import Membership, Organization, User
from portal.tenancy import Role
from tests.conftest import client_for
from tests.factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_anonymous_root_serves_the_front_page_with_login_and_signup():
    response = Client().get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Talking-avatar agents for your whole team</h1>" in html
    assert '<h2 id="login-heading">Log in</h2>' in html
    assert 'name="username"' in html and f'href="{reverse("signup")}"' in html


def test_signup_creates_user_and_first_organization_as_owner():
    response = Client().post(
        reverse("signup"),
        {
            "full_name": "Ada Lovelace",
            "email": "Ada@Example.com",
            "password": "analytical-engine-1843",
            "organization_name": "Analytical Engines",
        },
    )
    org = Organization.objects.get(name="Analytical Engines")
    assert response.status_code == 302
    assert response["Location"] == f"/o/{org.slug}/"
    user = User.objects.get()
    assert user.email == "ada@example.com"
    assert Membership.objects.get(user=user, organization=org).role == Role.OWNER


def test_signup_with_existing_email_in_other_case_is_a_field_error_and_saves_nothing():
    UserFactory(email="taken@example.com")
    response = Client().post(
        reverse("signup"),
        {
            "email": "TAKEN@example.com",
            "password": "another-long-password-9",
            "organization_name": "Dup Inc",
        },
    )
    assert response.status_code == 200
    assert "email" in response.context["form"].errors
    assert not Organization.objects.filter(name="Dup Inc").exists()
    assert User.objects.count() == 1


def test_signup_weak_password_is_rejected_next_to_the_field():
    response = Client().post(
        reverse("signup"),
        {"email": "new@example.com", "password": "123", "organization_name": "X"},
    )
    assert "password" in response.context["form"].errors
    assert not User.objects.exists()


def test_login_by_email_is_case_insensitive_and_lands_in_the_organization():
    membership = MembershipFactory(user__email="carol@example.com", role=Role.ADMIN)
    client = Client()
    response = client.post(
        reverse("login"), {"username": "CAROL@Example.com", "password": PASSWORD}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"/o/{membership.organization.slug}/"
    assert response.context["user"].email == "carol@example.com"


def test_wrong_password_shows_a_clear_error():
    UserFactory(email="dave@example.com")
    response = Client().post(reverse("login"), {"username": "dave@example.com", "password": "nope"})
    assert response.status_code == 200
    assert b"do not match an account" in response.content


def test_logout_requires_post_and_logs_out(member):
    client = client_for(member)
    assert client.get(reverse("logout")).status_code == 405
    client.post(reverse("logout"))
    assert client.get(f"/o/{member.organization.slug}/").status_code == 302


def test_password_change(member):
    client = client_for(member)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a-brand-new-password-77",
            "new_password2": "a-brand-new-password-77",
        },
    )
    assert response.status_code == 302
    member.user.refresh_from_db()
    assert member.user.check_password("a-brand-new-password-77")


def test_password_reset_by_email_link():
    user = UserFactory(email="erin@example.com")
    Client().post(reverse("password_reset"), {"email": "ERIN@example.com"})
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/reset/\S+/)", mail.outbox[0].body).group(1)
    client = Client()
    response = client.get(link, follow=True)
    form_url = response.redirect_chain[-1][0]
    client.post(
        form_url,
        {"new_password1": "reset-password-works-5", "new_password2": "reset-password-works-5"},
    )
    user.refresh_from_db()
    assert user.check_password("reset-password-works-5")


def _attempt(client: Client, email: str, password: str, ip: str):
    return client.post(reverse("login"), {"username": email, "password": password}, REMOTE_ADDR=ip)


def test_brute_force_locks_username_and_ip_but_not_the_account_elsewhere():
    UserFactory(email="frank@example.com")
    attacker = Client()
    for _ in range(4):
        response = _attempt(attacker, "frank@example.com", "wrong", "10.0.0.1")
        assert b"do not match" in response.content
    locked = _attempt(attacker, "Frank@example.com", "wrong", "10.0.0.1")
    assert locked.status_code == 429
    assert b"Too many failed log-in attempts" in locked.content
    # Even the right password is refused from that address now...
    again = _attempt(attacker, "frank@example.com", PASSWORD, "10.0.0.1")
    assert again.status_code == 429
    # ...while the owner logs in from their own address.
    owner_client = Client()
    ok = _attempt(owner_client, "frank@example.com", PASSWORD, "10.0.0.2")
    assert ok.status_code == 302
