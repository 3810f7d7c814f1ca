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


SIGNUP_PASSWORD = "analytical-engine-1843"


def _signup(client, email="Ada@Example.com", password=SIGNUP_PASSWORD, org="Engines"):
    return client.post(
        reverse("signup"),
        {
            "full_name": "Ada Lovelace",
            "email": email,
            "password": password,
            "organization_name": org,
        },
    )


def _main(html: str) -> str:
    """The page's own content, without its per-request tokens."""
    main = re.search(r"<main.*</main>", html, re.S).group(0)
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", main)


def _confirm_link(body: str) -> str:
    return re.search(r"http://testserver(/signup/confirm/\S+/)", body).group(1)


def test_signup_confirms_the_email_then_creates_the_first_organization_as_owner():
    client = Client()
    response = _signup(client)
    assert response.status_code == 302 and response["Location"] == reverse("signup_sent")
    user = User.objects.get()
    assert user.email == "ada@example.com" and user.email_verified_at is None
    assert not Organization.objects.exists()
    link = _confirm_link(mail.outbox[-1].body)
    assert b"Confirm my email" in client.get(link).content  # GET changes nothing
    assert User.objects.get().email_verified_at is None
    response = client.post(link)
    org = Organization.objects.get(name="Engines")
    assert response["Location"] == f"/o/{org.slug}/"
    user.refresh_from_db()
    assert user.email_verified_at is not None
    assert Membership.objects.get(user=user, organization=org).role == Role.OWNER
    # Opened again: nothing more is created.
    client.post(link)
    assert Organization.objects.count() == 1


def test_signup_answers_alike_for_a_taken_and_a_free_address():
    UserFactory(email="taken@example.com")
    taken = _signup(Client(), email="TAKEN@example.com", org="Dup Inc")
    free = _signup(Client(), email="free@example.com", org="Free Inc")
    assert (taken.status_code, taken["Location"]) == (free.status_code, free["Location"])
    pages = [Client(), Client()]
    for client, email in zip(pages, ["taken@example.com", "free@example.com"], strict=True):
        session = client.session
        session["signup_email"] = email
        session.save()
    sent = [_main(c.get(reverse("signup_sent")).content.decode()) for c in pages]
    assert sent[0].replace("taken@", "X@") == sent[1].replace("free@", "X@")
    assert not Organization.objects.exists()
    # The owner of the taken address is told, with no link that confirms anything.
    to_taken = next(m for m in mail.outbox if m.to == ["taken@example.com"])
    assert "already has an account" in to_taken.body and "/signup/confirm/" not in to_taken.body
    assert User.objects.get(email="taken@example.com").check_password(PASSWORD)


def test_an_unconfirmed_account_can_log_in_but_not_create_an_organization_or_invite():
    client = Client()
    _signup(client, email="ada@example.com")
    login = Client()
    login.post(
        reverse("login"), {"username": "ada@example.com", "password": "analytical-engine-1843"}
    )
    page = login.get(reverse("organization_create"))
    assert b"Confirm your email first" in page.content
    login.post(reverse("organization_create"), {"name": "Sneaky"})
    assert not Organization.objects.exists()
    # Even an organization gained otherwise does not let them invite.
    user = User.objects.get(email="ada@example.com")
    membership = MembershipFactory(user=user, role=Role.OWNER)
    refused = login.post(
        reverse("member_invite", args=[membership.organization.slug]),
        {"email": "friend@example.com", "role": "member"},
    )
    assert b"Confirm your email address before you invite people" in refused.content
    assert all(m.to != ["friend@example.com"] for m in mail.outbox)


def test_the_confirmation_link_can_be_resent_within_a_limit(settings):
    settings.EMAIL_VERIFICATION_LIMIT = 2
    client = Client()
    _signup(client, email="ada@example.com")
    first = _confirm_link(mail.outbox[-1].body)
    resent = client.post(reverse("signup_sent"), {"email": "ada@example.com"}, follow=True)
    assert b"a new link is on its way" in resent.content
    assert len(mail.outbox) == 2
    refused = client.post(reverse("signup_sent"), {"email": "ada@example.com"})
    assert b"Too many emails were sent to this address. Try again in" in refused.content
    assert len(mail.outbox) == 2
    # The same answer and the same limit for an address with no account waiting.
    for _ in range(2):
        client.post(reverse("signup_sent"), {"email": "nobody@example.com"})
    refused = client.post(reverse("signup_sent"), {"email": "nobody@example.com"})
    assert b"Too many emails were sent to this address" in refused.content
    # Every link sent works, in another browser too (then it asks to log in).
    response = Client().post(first)
    assert response["Location"] == reverse("login")
    assert User.objects.get(email="ada@example.com").email_verified_at is not None


def test_a_forged_or_tampered_confirmation_link_confirms_nothing():
    _signup(Client(), email="ada@example.com")
    link = _confirm_link(mail.outbox[-1].body)
    tampered = link[:-3] + ("A" if link[-3] != "A" else "B") + link[-2:]
    assert Client().post(tampered).status_code == 400
    assert Client().post("/signup/confirm/nonsense/").status_code == 400
    assert User.objects.get().email_verified_at is None


def test_a_password_reset_through_the_emailed_link_also_confirms_the_address():
    _signup(Client(), email="ada@example.com")
    Client().post(reverse("password_reset"), {"email": "ada@example.com"})
    link = re.search(r"http://testserver(/reset/\S+/)", mail.outbox[-1].body).group(1)
    client = Client()
    form_url = client.get(link, follow=True).redirect_chain[-1][0]
    client.post(
        form_url,
        {"new_password1": "reset-password-works-5", "new_password2": "reset-password-works-5"},
    )
    assert User.objects.get().email_verified_at is not None


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


def test_accepting_an_invitation_confirms_the_address(admin):
    from organizations import invitations

    client = Client()
    _signup(client, email="ada@example.com")
    issued = invitations.invitation_create(
        actor=admin, email="ada@example.com", role=Role.MEMBER, base_url="http://testserver/"
    )
    user = User.objects.get(email="ada@example.com")
    invitations.invitation_accept(invitation=issued.invitation, user=user)
    user.refresh_from_db()
    assert user.email_verified_at is not None
