"""Agent pages through HTTP: role rules, pre-flight errors, the outbox, fragments, prompts."""

import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents import services
from agents.models import Agent, AgentStatus, PromptRevision
from portal.tenancy import Role
from tests.conftest import client_for
from tests.factories import AgentFactory, MembershipFactory
from tests.media import png_upload, wav_upload

pytestmark = pytest.mark.django_db


def _form(**overrides):
    data = {
        "submission_id": str(uuid.uuid4()),
        "name": "Ava",
        "system_prompt": "You are Ava, a calm museum guide.",
        "model": "expression-1",
        "aspect_ratio": "16:9",
        "framing": "portrait",
        "image": png_upload(),
        "audio": wav_upload(),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_viewers_cannot_open_the_new_agent_form(org, viewer, member):
    url = reverse("agent_new", args=[org.slug])
    assert client_for(viewer).get(url).status_code == 403
    assert client_for(viewer).post(url, _form()).status_code == 403
    page = client_for(member).get(url)
    assert page.status_code == 200
    for label in ["Name", "Prompt", "Model", "Face image", "Voice sample", "Generate"]:
        assert label in page.content.decode()


def test_preflight_failure_is_shown_next_to_the_field_and_nothing_is_saved(org, member):
    fake_png = SimpleUploadedFile("face.png", b"this is text, not an image", "image/png")
    response = client_for(member).post(reverse("agent_new", args=[org.slug]), _form(image=fake_png))
    assert response.status_code == 400
    assert response.context["form"].errors["image"]
    assert "Pre-flight checks" in response.content.decode()
    assert not Agent.objects.exists()


def test_prompt_is_required_without_an_image(org, member):
    response = client_for(member).post(
        reverse("agent_new", args=[org.slug]), _form(image=None, system_prompt="")
    )
    assert response.status_code == 400
    assert response.context["form"].errors["system_prompt"]
    assert not Agent.objects.exists()


def test_file_and_link_together_is_a_field_error(org, member):
    response = client_for(member).post(
        reverse("agent_new", args=[org.slug]), _form(image_url="https://example.com/face.png")
    )
    assert response.status_code == 400
    assert response.context["form"].errors["image_url"]


@pytest.mark.django_db(transaction=True)
def test_generate_submits_once_even_when_the_form_is_sent_twice(sandbox_api, org, member):
    client = client_for(member)
    form = _form()
    first = client.post(reverse("agent_new", args=[org.slug]), form)
    again = client.post(
        reverse("agent_new", args=[org.slug]),
        {**form, "image": png_upload(), "audio": wav_upload()},
    )
    agent = Agent.objects.get()
    assert (
        first["Location"]
        == again["Location"]
        == reverse("agent_detail", args=[org.slug, agent.public_id])
    )
    # The task ran (eagerly) after commit and bitHuman (the sandbox, over HTTP) took it.
    assert agent.status == AgentStatus.PROCESSING
    assert agent.code and agent.submitted_at
    assert agent.created_by == member.user
    assert agent.image.name.endswith(".png") and agent.audio.name.endswith(".wav")


@pytest.mark.django_db(transaction=True)
def test_submit_is_idempotent_upstream(sandbox_api, org, member):
    agent = services.agent_create(
        actor=member,
        name="Bo",
        system_prompt="A cheerful host",
        model="expression-1",
        aspect_ratio="16:9",
        framing="portrait",
        transparency=False,
        image=services.MediaSource(),
        audio=services.MediaSource(),
    )
    agent.refresh_from_db()
    code = agent.code
    # A worker that died after bitHuman answered but before our commit: the row is still
    # `submitting` and gets re-sent with the same key, which replays the same upstream agent.
    Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.SUBMITTING, code="")
    services.agent_submit(agent_pk=agent.pk)
    agent.refresh_from_db()
    assert agent.code == code
    assert agent.status == AgentStatus.PROCESSING


def test_fragment_polls_only_while_in_flight(org, viewer):
    client = client_for(viewer)
    generating = AgentFactory(
        organization=org, status="generating", progress=0.4, code="A11AAA1111"
    )
    ready = AgentFactory(organization=org, status="ready", code="A22BBB2222")
    url = reverse("agent_detail", args=[org.slug, generating.public_id])
    fragment = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert 'hx-trigger="every 2s"' in fragment and "<html" not in fragment
    assert 'value="40"' in fragment
    fragment = client.get(
        reverse("agent_detail", args=[org.slug, ready.public_id]), headers={"HX-Request": "true"}
    ).content.decode()
    assert "hx-trigger" not in fragment
    assert "A22BBB2222" in fragment and "Start session" not in fragment  # viewers cannot start


def test_fragment_query_count_does_not_grow_with_the_organization(org, viewer):
    client = client_for(viewer)
    agent = AgentFactory(organization=org, status="generating")

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            client.get(
                reverse("agent_detail", args=[org.slug, agent.public_id]),
                headers={"HX-Request": "true"},
            )
        return len(ctx.captured_queries)

    one = count()
    AgentFactory.create_batch(50, organization=org, status="generating")
    assert count() == one
    list_url = reverse("agent_list", args=[org.slug])
    with CaptureQueriesContext(connection) as ctx:
        client.get(list_url, headers={"HX-Request": "true"})
    with_51 = len(ctx.captured_queries)
    Agent.objects.exclude(pk=agent.pk).delete()
    with CaptureQueriesContext(connection) as ctx:
        client.get(list_url, headers={"HX-Request": "true"})
    assert len(ctx.captured_queries) == with_51


def test_list_search_filter_and_pagination(org, viewer):
    # Names no random token of the page (a CSP nonce, an asset hash) could contain.
    AgentFactory(organization=org, name="Zed Quill", status="failed")
    AgentFactory(organization=org, name="Ada Lovelace", status="ready", code="A99ZZZ9999")
    AgentFactory.create_batch(30, organization=org, status="generating", model="essence-1")
    client = client_for(viewer)
    url = reverse("agent_list", args=[org.slug])
    page = client.get(url, {"q": "a99zzz9999"}).content.decode()
    assert "Ada Lovelace" in page and "Zed Quill" not in page
    page = client.get(url, {"status": "failed"}).content.decode()
    assert "Zed Quill" in page and "Ada Lovelace" not in page
    response = client.get(url, {"model": "essence-1"})
    assert len(response.context["agents"]) == 25
    assert "Page 1 of 2" in response.content.decode()


@pytest.fixture
def ready_agent(sandbox_api, org, member):
    """A real upstream agent in the organization's sandbox account, walked to ready."""
    from organizations import connections

    connection = connections.connection_get(org=org)
    with connections.client_for(connection=connection) as client:
        code = client.agent_generate(prompt="A patient tutor", model="expression-1").agent_id
    agent = AgentFactory(
        organization=org, code=code, status="ready", system_prompt="A patient tutor"
    )
    return agent


@pytest.mark.django_db(transaction=True)
def test_prompt_edit_diff_and_restore(ready_agent, org, member):
    client = client_for(member)
    url = reverse("agent_prompt", args=[org.slug, ready_agent.public_id])
    client.post(url, {"system_prompt": "A patient tutor.\nSpeaks slowly."})
    client.post(url, {"system_prompt": "A strict tutor."})
    revisions = list(PromptRevision.objects.filter(agent=ready_agent))
    assert [r.accepted for r in revisions] == [True, True]
    page = client.get(
        reverse("agent_detail", args=[org.slug, ready_agent.public_id])
    ).content.decode()
    # By word, the change marked (and the unchanged words around it plain).
    assert '<del class="diff-del">patient tutor.\nSpeaks slowly.</del>' in page
    assert '<ins class="diff-add">strict tutor.</ins>' in page
    older = revisions[-1]
    client.post(
        reverse("agent_prompt_restore", args=[org.slug, ready_agent.public_id, older.pk]),
        {"confirmed": "yes"},
    )
    ready_agent.refresh_from_db()
    assert ready_agent.system_prompt == "A patient tutor.\nSpeaks slowly."
    assert PromptRevision.objects.filter(agent=ready_agent).count() == 3


@pytest.mark.django_db(transaction=True)
def test_refused_prompt_keeps_the_text_with_the_error(sandbox_api, org, member):
    stranger = AgentFactory(organization=org, code="A00NOP0000", status="ready")
    response = client_for(member).post(
        reverse("agent_prompt", args=[org.slug, stranger.public_id]),
        {"system_prompt": "My carefully written prompt"},
    )
    assert response.status_code == 400
    assert "did not accept" in str(response.context["prompt_form"].errors)
    assert "My carefully written prompt" in response.content.decode()
    revision = PromptRevision.objects.get()
    assert not revision.accepted and revision.error_message


@pytest.mark.django_db(transaction=True)
def test_delete_archives_and_hides(ready_agent, org, member):
    client = client_for(member)
    url = reverse("agent_delete", args=[org.slug, ready_agent.public_id])
    assert client.post(url, {"confirm": "wrong"}).status_code == 400
    client.post(url, {"confirm": ready_agent.name})
    ready_agent.refresh_from_db()
    assert ready_agent.archived_at is not None
    detail = reverse("agent_detail", args=[org.slug, ready_agent.public_id])
    assert client.get(detail).status_code == 404


def test_retry_is_the_same_agent_with_the_same_inputs(
    org, member, django_capture_on_commit_callbacks
):
    failed = AgentFactory(organization=org, status="failed", code="A33CCC3333", error_message="x")
    with django_capture_on_commit_callbacks() as queued:
        response = client_for(member).post(
            reverse("agent_retry", args=[org.slug, failed.public_id])
        )
    assert Agent.objects.count() == 1  # no second row
    assert response["Location"] == reverse("agent_detail", args=[org.slug, failed.public_id])
    failed.refresh_from_db()
    assert (failed.status, failed.attempt, failed.code) == ("submitting", 2, "")
    assert len(queued) == 1


def test_notices_tell_the_creator_when_an_agent_finishes(org, member):
    client = client_for(member)
    url = reverse("agent_notices", args=[org.slug])
    agent = AgentFactory(organization=org, created_by=member.user, status="generating")
    assert client.get(url).content.strip() == b""  # first look sets the baseline
    from django.utils import timezone

    Agent.objects.filter(pk=agent.pk).update(status="ready", ready_at=timezone.now())
    assert f"{agent.name}</a>\n  is ready" in client.get(url).content.decode()
    assert client.get(url).content.strip() == b""  # shown once
    other = MembershipFactory(organization=org, role=Role.MEMBER)
    assert client_for(other).get(url).content.strip() == b""


@pytest.mark.django_db(transaction=True)
def test_the_creation_prompt_is_revision_1_and_can_be_restored(sandbox_api, org, member):
    client = client_for(member)
    client.post(
        reverse("agent_new", args=[org.slug]),
        _form(system_prompt="You are Ava, a calm museum guide. She knows every painting."),
    )
    agent = Agent.objects.get()
    first = PromptRevision.objects.get(agent=agent)
    assert first.accepted and first.author == member.user
    Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.READY)
    url = reverse("agent_prompt", args=[org.slug, agent.public_id])
    client.post(
        url, {"system_prompt": "You are Ava, a loud museum guide. She knows every painting."}
    )
    page = client.get(reverse("agent_detail", args=[org.slug, agent.public_id])).content.decode()
    assert "Revision 1 (the prompt it was created with)" in page and "Revision 2" in page
    assert '<del class="diff-del">calm</del><ins class="diff-add">loud</ins>' in page
    assert "Restore revision 1" in page

    client.post(
        reverse("agent_prompt_restore", args=[org.slug, agent.public_id, first.pk]),
        {"confirmed": "yes"},
    )
    agent.refresh_from_db()
    assert agent.system_prompt == "You are Ava, a calm museum guide. She knows every painting."
    assert PromptRevision.objects.filter(agent=agent, accepted=True).count() == 3
