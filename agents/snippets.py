"""Code to use a ready agent elsewhere, as bitHuman's docs describe each path: curl, the Python
SDK (a downloaded model as `model_path`, `agent_code` for billing attribution), the LiveKit
plugin, and the embed iframe with the backend code that mints its token (Python and Node).

In Test mode every URL is the sandbox's, where the agent exists (its code means nothing at
api.bithuman.ai), and each snippet says so. The tests compile the Python, parse the shell with
`bash -n` and the JavaScript with `node --check`, and run the token minting against the sandbox.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings

from agents.models import Agent, AgentModel
from portal.models import BithumanConnection

# bitHuman's hosted embed page (api/embedding.md); its API URL is the connection's.
EMBED_BASE_URL = "https://bithuman.ai"
# Families with a per-identity artifact at GET /v1/agent/{code}/model/download (api/agents.md):
# expression-1 has none (400 MODEL_NOT_DOWNLOADABLE).
DOWNLOADABLE = ("essence-1", "essence-2", "essence-2-max", "expression-2")
# The only artifact the streaming SDK loads on every platform (sdk/python.md): essence-2
# bundles built on bitHuman's current renderer fail to load there, Expression has none.
SDK_LOADABLE = "essence-1"


@dataclass(frozen=True)
class Snippet:
    key: str  # the element id's suffix: snippet-<key>
    title: str
    language: str  # shell, python, javascript, html
    code: str
    note: str = ""


@dataclass(frozen=True)
class AgentSnippets:
    test_mode: bool
    api_url: str
    embed_url: str
    downloadable: tuple[str, ...]
    snippets: tuple[Snippet, ...]


def _q(value: str) -> str:
    """A string literal valid in Python and JavaScript alike."""
    return json.dumps(value)


def _families(agent: Agent) -> list[str]:
    return list(agent.supported_models or ([agent.model] if agent.model != "auto" else []))


def agent_snippets(*, agent: Agent, connection: BithumanConnection) -> AgentSnippets:
    test_mode = not connection.is_live
    api_url = connection.base_url.rstrip("/")
    embed_url = (settings.SANDBOX_BASE_URL if test_mode else EMBED_BASE_URL).rstrip("/") + "/embed"
    families = _families(agent)
    downloadable = tuple(family for family in DOWNLOADABLE if family in families)
    where = (
        "Test mode: the sandbox's URL, where this agent exists (Live mode: bitHuman's)."
        if test_mode
        else ""
    )
    snippets = [_curl(agent, api_url, downloadable, where)]
    if SDK_LOADABLE in families:
        snippets.append(_python_sdk(agent, api_url, where))
    snippets.append(_livekit(agent, test_mode))
    snippets.extend(_embed(agent, api_url, embed_url, where))
    return AgentSnippets(
        test_mode=test_mode,
        api_url=api_url,
        embed_url=embed_url,
        downloadable=downloadable,
        snippets=tuple(snippets),
    )


def _curl(agent: Agent, api_url: str, downloadable: tuple[str, ...], where: str) -> Snippet:
    code = agent.code
    lines = [
        "# The agent as bitHuman sees it",
        f'curl -s "{api_url}/v1/agent/{code}" -H "api-secret: $BITHUMAN_API_SECRET"',
        "",
        "# Make it speak in its live rooms (a session must be running)",
        f'curl -s -X POST "{api_url}/v1/agent/{code}/speak" \\',
        '  -H "api-secret: $BITHUMAN_API_SECRET" -H "Content-Type: application/json" \\',
        '  -d \'{"message": "Hello from the portal"}\'',
    ]
    if downloadable:
        lines += [
            "",
            f"# Download its {downloadable[0]} model (a redirect to the file)",
            'curl -LOJ -H "api-secret: $BITHUMAN_API_SECRET" \\',
            f'  "{api_url}/v1/agent/{code}/model/download?model={downloadable[0]}"',
        ]
    return Snippet(
        key="curl",
        title="curl",
        language="shell",
        code="\n".join(lines),
        note=where or "Set BITHUMAN_API_SECRET to the organization's bitHuman API secret.",
    )


def _python_sdk(agent: Agent, api_url: str, where: str) -> Snippet:
    code = f'''"""Run the agent on this machine with bitHuman's Python SDK: pip install bithuman"""
import asyncio
import os
import shutil
import urllib.request

from bithuman import AsyncBithuman

API_URL = {_q(api_url)}
AGENT_CODE = {_q(agent.code)}
MODEL_PATH = f"{{AGENT_CODE}}.imx"


def model_download() -> None:
    """GET /v1/agent/{{code}}/model/download answers a redirect to the model file."""
    request = urllib.request.Request(
        f"{{API_URL}}/v1/agent/{{AGENT_CODE}}/model/download?model={SDK_LOADABLE}",
        headers={{"api-secret": os.environ["BITHUMAN_API_SECRET"]}},
    )
    with urllib.request.urlopen(request, timeout=300) as answer, open(MODEL_PATH, "wb") as out:
        shutil.copyfileobj(answer, out)


async def main() -> None:
    if not os.path.exists(MODEL_PATH):
        model_download()
    runtime = await AsyncBithuman.create(
        model_path=MODEL_PATH,
        agent_code=AGENT_CODE,  # billing attribution
        api_secret=os.environ["BITHUMAN_API_SECRET"],
    )
    # Push 16-bit PCM with runtime.push_audio(...), read frames from runtime.run():
    # bitHuman's audio streaming guide has the whole loop.
    await runtime.stop()


asyncio.run(main())
'''
    return Snippet(
        key="python-sdk",
        title="Python SDK (on your machine)",
        language="python",
        code=code,
        note=where or "Downloads the agent's essence-1 model once, then runs it locally.",
    )


def _livekit(agent: Agent, test_mode: bool) -> Snippet:
    expression_one = agent.model == AgentModel.EXPRESSION_1
    model_line = (
        '    model="expression",  # Expression 1, the model this agent was made with\n'
        if expression_one
        else ""
    )
    code = f'''"""In a LiveKit agent worker: pip install livekit-plugins-bithuman pillow"""
import os

from livekit.plugins import bithuman

avatar = bithuman.AvatarSession(
    avatar_id={_q(agent.code)},
    api_secret=os.environ["BITHUMAN_API_SECRET"],
{model_line})
# In your entrypoint: await avatar.start(session, room=ctx.room), then start the AgentSession.
'''
    note = (
        "Test mode: the LiveKit plugin always reaches bitHuman's cloud, where this sandbox "
        "agent does not exist: it runs once the organization is in Live mode."
        if test_mode
        else "bitHuman hosts the avatar; the session bills at the cloud rate."
    )
    return Snippet(key="livekit", title="LiveKit plugin", language="python", code=code, note=note)


def _embed(agent: Agent, api_url: str, embed_url: str, where: str) -> list[Snippet]:
    page = f"{embed_url}/{agent.code}"
    html = f'''<iframe
  src="{page}?token=YOUR_TOKEN"
  allow="microphone *; camera *; autoplay *"
  style="width: 100%; height: 600px; border: 0;"
></iframe>'''
    python = f'''"""Mint an embed token per visitor, on your server (never in a browser)."""
import json
import os
import urllib.parse
import urllib.request

API_URL = {_q(api_url)}
EMBED_PAGE = {_q(page)}
AGENT_CODE = {_q(agent.code)}


def embed_token(fingerprint: str) -> str:
    """A 1-hour token for one visitor; `fingerprint` is a stable hex id of that visitor."""
    request = urllib.request.Request(
        f"{{API_URL}}/v1/embed-tokens/request",
        data=json.dumps({{"agent_id": AGENT_CODE, "fingerprint": fingerprint}}).encode(),
        headers={{
            "api-secret": os.environ["BITHUMAN_API_SECRET"],
            "content-type": "application/json",
        }},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=15) as answer:
        return json.load(answer)["data"]["token"]


def embed_src(fingerprint: str) -> str:
    """The iframe's src for this visitor."""
    return f"{{EMBED_PAGE}}?token={{urllib.parse.quote(embed_token(fingerprint))}}"
'''
    node = f"""// Mint an embed token per visitor on your server (Node 18+; the secret stays here).
const API_URL = {_q(api_url)};
const EMBED_PAGE = {_q(page)};
const AGENT_CODE = {_q(agent.code)};

async function embedToken(fingerprint) {{
  const res = await fetch(`${{API_URL}}/v1/embed-tokens/request`, {{
    method: "POST",
    headers: {{
      "api-secret": process.env.BITHUMAN_API_SECRET,
      "content-type": "application/json",
    }},
    body: JSON.stringify({{ agent_id: AGENT_CODE, fingerprint }}),
  }});
  if (!res.ok) throw new Error(`bitHuman answered ${{res.status}}`);
  const {{ data: {{ token }} }} = await res.json();
  return token;
}}

async function embedSrc(fingerprint) {{
  return `${{EMBED_PAGE}}?token=${{encodeURIComponent(await embedToken(fingerprint))}}`;
}}

module.exports = {{ embedToken, embedSrc }};
"""
    return [
        Snippet(
            key="embed-html",
            title="Embed on your website",
            language="html",
            code=html,
            note=(where + " " if where else "")
            + "Replace YOUR_TOKEN with a token your server mints for each visitor (below).",
        ),
        Snippet(key="embed-python", title="Mint the token: Python", language="python", code=python),
        Snippet(key="embed-node", title="Mint the token: Node", language="javascript", code=node),
    ]
