"""Uploaded faces and voices are served only to members of the agent's organization, through
the portal (never at MEDIA_URL, not even by `make run`'s DEBUG URLconf), and not once the agent
is deleted."""

import importlib

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import clear_url_caches, reverse
from django.utils import timezone

from tests.conftest import client_for
from tests.factories import AgentFactory
from tests.media import png_bytes, wav_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(org):
    return AgentFactory(
        organization=org,
        image=ContentFile(png_bytes(64), name="face.png"),
        audio=ContentFile(wav_bytes(0.2), name="voice.wav"),
    )


def _url(agent, kind):
    return reverse("agent_media", args=[agent.organization.slug, agent.public_id, kind])


def test_members_get_the_face_and_voice_with_their_real_types(agent, viewer):
    client = client_for(viewer)
    face = client.get(_url(agent, "face"))
    assert face.status_code == 200 and face["Content-Type"] == "image/png"
    assert b"".join(face.streaming_content) == agent.image.open("rb").read()
    assert "private" in face["Cache-Control"]
    voice = client.get(_url(agent, "voice"))
    assert voice.status_code == 200 and voice["Content-Type"] in {"audio/wav", "audio/x-wav"}
    assert client.get(_url(agent, "video")).status_code == 404


def test_anonymous_and_foreign_users_get_nothing(agent, other_owner):
    anonymous = Client().get(_url(agent, "face"))
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    foreign = client_for(other_owner).get(_url(agent, "face"))
    assert foreign.status_code == 404


def test_a_deleted_agents_media_is_no_longer_served(agent, member):
    client = client_for(member)
    assert client.get(_url(agent, "face")).status_code == 200
    type(agent).objects.filter(pk=agent.pk).update(archived_at=timezone.now())
    assert client.get(_url(agent, "face")).status_code == 404
    assert client.get(_url(agent, "voice")).status_code == 404


def test_an_agent_without_an_upload_has_no_media(org, member):
    bare = AgentFactory(organization=org)
    assert client_for(member).get(_url(bare, "face")).status_code == 404


def test_the_detail_page_shows_the_face_through_the_portal(agent, member):
    page = client_for(member).get(
        reverse("agent_detail", args=[agent.organization.slug, agent.public_id])
    )
    html = page.content.decode()
    assert f'src="{_url(agent, "face")}"' in html
    assert agent.image.name not in html  # not the storage path at MEDIA_URL


def test_media_url_is_not_served_even_by_the_debug_urlconf(agent, settings):
    """`make run` runs with DEBUG=True: the URLconf it builds must not serve MEDIA_ROOT."""
    import interfaces.urls

    path = "/" + settings.MEDIA_URL.lstrip("/") + agent.image.name
    settings.DEBUG = True
    try:
        importlib.reload(interfaces.urls)
        clear_url_caches()
        assert Client().get(path).status_code == 404
        assert client_for(_owner(agent)).get(path).status_code == 404
    finally:
        settings.DEBUG = False
        importlib.reload(interfaces.urls)
        clear_url_caches()


def _owner(agent):
    from tests.factories import MembershipFactory

    return MembershipFactory(organization=agent.organization, role="owner")
