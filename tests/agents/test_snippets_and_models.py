"""A ready agent's page: snippets that run (compiled, parsed, and the token minting run against
the sandbox), the model download link, adding a model with the price first (page and API,
audited, followed until bitHuman lists it), `auto` at generation; another organization's agent
answers 404 everywhere."""

from __future__ import annotations

import html as htmllib
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import httpx
import pytest
from django.urls import reverse

from activity.models import AuditEvent
from agents import model_adds, snippets
from agents.models import Agent
from organizations import connections
from portal.models import ConnectionMode
from sandbox import services as sandbox_services
from sandbox.models import SandboxAgent
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _account(org):
    connection = connections.connection_get(org=org)
    return sandbox_services.sandbox_account_for_secret(secret=connection.sandbox_secret)


def _ready(org, model: str, prompt: str = "A friendly museum guide", **fields) -> Agent:
    """An agent generated in the org's sandbox account, brought to ready by its test clock."""
    connection = connections.connection_get(org=org)
    with connections.client_for(connection=connection) as client:
        code = client.agent_generate(prompt=prompt, model=model).agent_id  # type: ignore[arg-type]
        sandbox_services.sandbox_clock_advance(account=_account(org), seconds=100_000)
        status = client.agent_status_get(agent_id=code)
    assert status.is_ready
    return AgentFactory(
        organization=org,
        code=code,
        model=model,
        status="ready",
        supported_models=list(status.supported_models),
        **fields,
    )


def _snippets(page: str) -> dict[str, str]:
    found = re.findall(r'<code id="snippet-([\w-]+)">(.*?)</code>', page, re.S)
    return {key: htmllib.unescape(code) for key, code in found}


def _detail(member, agent) -> str:
    response = client_for(member).get(
        reverse("agent_detail", args=[agent.organization.slug, agent.public_id])
    )
    assert response.status_code == 200
    return response.content.decode()


class _Iframes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.iframes: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "iframe":
            self.iframes.append(dict(attrs))


def test_every_snippet_parses_and_points_at_the_sandbox(sandbox_api, org, member, tmp_path):
    agent = _ready(org, "essence-1")
    page = _detail(member, agent)
    found = _snippets(page)
    assert set(found) == {
        "curl",
        "python-sdk",
        "livekit",
        "embed-html",
        "embed-python",
        "embed-node",
    }
    for key in found:  # each with its Copy button
        assert f'data-copy="#snippet-{key}"' in page
    assert 'data-testid="snippets-test-mode"' in page
    assert "api.bithuman.ai" not in "".join(found.values())

    for key in ("python-sdk", "livekit", "embed-python"):
        compile(found[key], f"<{key}>", "exec")
    sdk = found["python-sdk"]
    assert "model_path=MODEL_PATH" in sdk and "agent_code=AGENT_CODE" in sdk
    assert "agent_id" not in sdk
    assert "/v1/agent/{AGENT_CODE}/model/download?model=essence-1" in sdk
    assert f'API_URL = "{sandbox_api}"' in sdk
    assert 'model="expression"' not in found["livekit"]  # essence-1 serves its own model

    script = tmp_path / "curl.sh"
    script.write_text(found["curl"])
    bash = shutil.which("bash") or "/bin/bash"
    parsed = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    node = shutil.which("node")
    assert node, "node is needed to check the Node snippet"
    (tmp_path / "mint.js").write_text(found["embed-node"])
    checked = subprocess.run([node, "--check", str(tmp_path / "mint.js")], capture_output=True)
    assert checked.returncode == 0, checked.stderr

    parser = _Iframes()
    parser.feed(found["embed-html"])
    (iframe,) = parser.iframes
    assert iframe["src"] == f"{sandbox_api}/embed/{agent.code}?token=YOUR_TOKEN"
    assert iframe["allow"] == "microphone *; camera *; autoplay *"


def test_the_snippets_run_against_the_sandbox(sandbox_api, org, member, tmp_path):
    agent = _ready(org, "essence-1")
    found = _snippets(_detail(member, agent))
    secret = connections.connection_get(org=org).sandbox_secret
    env = {**os.environ, "BITHUMAN_API_SECRET": secret}

    # curl: the agent as bitHuman sees it, and its model file (into tmp_path).
    (tmp_path / "curl.sh").write_text(found["curl"])
    ran = subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(tmp_path / "curl.sh")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr
    assert f'"code": "{agent.code}"' in ran.stdout
    assert (tmp_path / f"{agent.code}.imx").read_bytes().startswith(b"BITHUMAN-SANDBOX-IMX")

    # Python: the visitor's iframe src, whose page the sandbox serves.
    os.environ["BITHUMAN_API_SECRET"] = secret
    try:
        namespace: dict = {}
        exec(found["embed-python"], namespace)  # noqa: S102 (our own page's code)
        src = namespace["embed_src"]("a1b2c3d4")
    finally:
        del os.environ["BITHUMAN_API_SECRET"]
    assert src.startswith(f"{sandbox_api}/embed/{agent.code}?token=")
    assert httpx.get(src).status_code == 200

    # Node: the same through fetch.
    (tmp_path / "mint.js").write_text(found["embed-node"])
    out = subprocess.run(
        [shutil.which("node"), "-e", "require('./mint.js').embedSrc('a1b2c3d4').then(console.log)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert httpx.get(out.stdout.strip()).status_code == 200


def test_expression_one_has_no_sdk_snippet_nor_download_and_livekit_names_it(
    sandbox_api, org, member
):
    agent = _ready(org, "expression-1")
    page = _detail(member, agent)
    found = _snippets(page)
    assert "python-sdk" not in found
    assert 'data-testid="model-download"' not in page
    assert "model/download" not in found["curl"]
    assert 'model="expression"' in found["livekit"]
    compile(found["livekit"], "<livekit>", "exec")


def test_live_mode_snippets_use_bithuman_itself(org, settings):
    settings.BITHUMAN_API_URL = "https://api.bithuman.ai"
    connection = connections.connection_get(org=org)
    connection.mode = ConnectionMode.LIVE
    agent = AgentFactory(organization=org, model="essence-1", supported_models=["essence-1"])
    made = snippets.agent_snippets(agent=agent, connection=connection)
    assert not made.test_mode and made.embed_url == "https://bithuman.ai/embed"
    codes = {s.key: s.code for s in made.snippets}
    assert f'"https://bithuman.ai/embed/{agent.code}"' in codes["embed-python"]
    assert f'"https://api.bithuman.ai/v1/agent/{agent.code}"' in codes["curl"]
    assert all("sandbox" not in s.note.lower() for s in made.snippets)


def test_the_download_link_hands_over_bithumans_file(sandbox_api, org, member, other_owner):
    agent = _ready(org, "essence-1")
    url = reverse("agent_model_download", args=[org.slug, agent.public_id]) + "?model=essence-1"
    assert url in _detail(member, agent).replace("&amp;", "&")
    response = client_for(member).get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(f"{sandbox_api}/files/{agent.code}")
    assert httpx.get(response["Location"]).content.startswith(b"BITHUMAN-SANDBOX-IMX")
    # A family it does not have: bitHuman's reason on the agent's page, no file.
    missing = client_for(member).get(url.replace("essence-1", "expression-2"), follow=True)
    assert "has no expression-2 file" in missing.content.decode()
    # Another organization's agent is not there at all.
    foreign = reverse("agent_model_download", args=[org.slug, agent.public_id])
    assert client_for(other_owner).get(foreign).status_code == 404


def test_adding_a_model_shows_the_price_first_then_is_followed(sandbox_api, org, member):
    agent = _ready(org, "expression-1")
    page = _detail(member, agent)
    assert "Expression 2 · 2000 credits · about 1-1.5 h" in page
    assert '<option value="expression-1">' not in page  # it has it
    credits = _account(org).credits
    url = reverse("agent_model_add", args=[org.slug, agent.public_id])
    client = client_for(member)

    step = client.post(url, {"model": "expression-2"})
    assert step.status_code == 200
    assert "costs 2000 bitHuman credits" in step.content.decode()
    assert _account(org).credits == credits  # nothing asked of bitHuman yet

    done = client.post(url, {"model": "expression-2", "confirmed": "yes"}, follow=True)
    assert "bitHuman is adding Expression 2" in done.content.decode()
    agent.refresh_from_db()
    assert [entry["model"] for entry in agent.models_adding] == ["expression-2"]
    assert _account(org).credits == credits - 2000
    audit = AuditEvent.objects.get(action="agent.model_added")
    assert audit.details == {"model": "expression-2", "credits": 2000, "status": "processing"}
    assert 'data-testid="models-adding"' in _detail(member, agent)

    assert model_adds.agents_model_adds_refresh() == 0  # still training
    sandbox_services.sandbox_clock_advance(account=_account(org), seconds=10_000)
    assert model_adds.agents_model_adds_refresh() == 1
    agent.refresh_from_db()
    assert "expression-2" in agent.supported_models and agent.models_adding == []


def test_a_viewer_and_another_organization_cannot_add_models(sandbox_api, org, viewer, other_owner):
    agent = _ready(org, "expression-1")
    url = reverse("agent_model_add", args=[org.slug, agent.public_id])
    body = {"model": "essence-1", "confirmed": "yes"}
    assert client_for(viewer).post(url, body).status_code == 403
    assert client_for(other_owner).post(url, body).status_code == 404
    assert not AuditEvent.objects.filter(action="agent.model_added").exists()


def test_the_api_adds_models_and_isolates_organizations(sandbox_api, org, other_org):
    agent = _ready(org, "essence-1")
    api = ApiClient(make_key(org))
    added = api.post(f"/agents/{agent.public_id}/models", {"model": "expression-1"})
    assert added.status_code == 200, added.content
    assert added.json()["status"] == "ready" and added.json()["credits"] == 0
    assert "expression-1" in added.json()["supported_models"]

    refused = api.post(f"/agents/{agent.public_id}/models", {"model": "banana"})
    assert refused.status_code == 422
    foreign = ApiClient(make_key(other_org)).post(
        f"/agents/{agent.public_id}/models", {"model": "essence-1"}
    )
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "not_found"

    generating = AgentFactory(organization=org, status="processing", code="")
    busy = api.post(f"/agents/{generating.public_id}/models", {"model": "essence-1"})
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "agent_not_ready"

    expression = _ready(org, "expression-1")
    upstream = api.post(f"/agents/{expression.public_id}/models", {"model": "essence-2"})
    assert upstream.status_code == 409
    assert "identity video" in upstream.json()["error"]["message"]


def test_auto_is_offered_and_routed_by_bithuman(sandbox_api, org, member):
    form = client_for(member).get(reverse("agent_new", args=[org.slug])).content.decode()
    assert re.search(r'<option value="auto">Auto: bitHuman picks Essence 2 .*500 or 2000', form)
    api = ApiClient(make_key(org))
    created = api.post(
        "/agents", {"name": "Router", "prompt": "A photorealistic receptionist", "model": "auto"}
    )
    assert created.status_code == 202, created.content
    agent = Agent.objects.get(public_id=created.json()["id"])
    assert agent.model == "auto"
    assert SandboxAgent.objects.get(code=agent.code).model == "essence-2"
