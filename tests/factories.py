"""Factories that keep every related object inside one organization."""

from datetime import timedelta

import factory
from django.utils import timezone

from portal.models import Invitation, Membership, Organization, User, token_hash
from portal.tenancy import Role

PASSWORD = "correct-horse-battery-42"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    full_name = factory.Faker("name")
    email_verified_at = factory.LazyFunction(timezone.now)
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Company {n}")
    slug = factory.Sequence(lambda n: f"company-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER


class InvitationFactory(factory.django.DjangoModelFactory):
    """Pass `token=` to know the link's token; its hash is what gets stored."""

    class Meta:
        model = Invitation
        exclude = ["token"]

    organization = factory.SubFactory(OrganizationFactory)
    email = factory.Sequence(lambda n: f"invitee{n}@example.com")
    role = Role.MEMBER
    invited_by = None
    token = factory.Sequence(lambda n: f"token-{n}-abcdefghijklmnop")
    token_hash = factory.LazyAttribute(lambda o: token_hash(o.token))
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=7))


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "agents.Agent"

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Agent {n}")
    system_prompt = "You are a friendly guide."
    model = "expression-1"
    code = factory.Sequence(lambda n: f"A{n % 100:02d}TST{n % 10000:04d}")
    status = "ready"
    progress = 1.0


class PromptRevisionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "agents.PromptRevision"

    agent = factory.SubFactory(AgentFactory)
    text = factory.Sequence(lambda n: f"Prompt version {n}")
    accepted = True


class ApiKeyFactory(factory.django.DjangoModelFactory):
    """A key row; use organizations.apikeys.api_key_create when the test needs the key itself."""

    class Meta:
        model = "portal.ApiKey"

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Key {n}")
    prefix = factory.Sequence(lambda n: f"bhp_{n:08d}")
    key_hash = factory.Sequence(lambda n: f"{n:064x}")
    last4 = "abcd"
    scopes = ["agents:read"]


class AgentSessionFactory(factory.django.DjangoModelFactory):
    """A live hosted session of a ready agent, inside the agent's organization."""

    class Meta:
        model = "agent_sessions.AgentSession"

    agent = factory.SubFactory(AgentFactory)
    organization = factory.SelfAttribute("agent.organization")
    kind = "hosted"
    room_name = factory.Sequence(lambda n: f"sid{n:08d}")
    room_url = factory.LazyAttribute(
        lambda o: f"https://bithuman.ai/embed/{o.agent.code}?token=test-token"
    )
    status = "live"


class SessionEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "agent_sessions.SessionEvent"

    session = factory.SubFactory(AgentSessionFactory)
    kind = "speak"
    text = factory.Sequence(lambda n: f"Line {n}")
    outcome = "delivered"
    delivered_rooms = 1


class QuickReplyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "agent_sessions.QuickReply"

    organization = factory.SubFactory(OrganizationFactory)
    text = factory.Sequence(lambda n: f"Quick reply {n}")
