"""A LiveKit Agents worker that gives a bitHuman agent a voice, a brain and its face.

This is the worker bitHuman's LiveKit deployment expects (guides/deploy-livekit.md): it runs in
your infrastructure, registers with your LiveKit project under an agent name, and for each room
it is dispatched into it starts a voice session (OpenAI Realtime: speech in, LLM, speech out)
and `livekit-plugins-bithuman`'s `AvatarSession`, which asks bitHuman to send the agent's avatar
into the room and lip-syncs it to the session's speech.

The portal (bitHuman Portal) creates each LiveKit session's room and dispatches this worker into
it by its agent name (LiveKit's agent dispatch API), with the bitHuman agent code in the job
metadata: `{"agent_code": "A78WKV4515", ...}`. Without metadata (a room someone else dispatched
it into) it uses BITHUMAN_AGENT_ID.

    pip install -r requirements.txt
    cp .env.example .env        # fill it in
    python worker.py --check    # the settings, without connecting anywhere
    python worker.py start      # production (python worker.py dev while developing)

The LiveKit packages are imported only after the arguments are read, so `--help` and `--check`
work on a machine without them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

DEFAULT_AGENT_NAME = "bithuman-avatar"
DEFAULT_INSTRUCTIONS = "You are a friendly, concise assistant. Answer in one or two sentences."
COMMANDS = ("start", "dev", "console", "download-files")
# Every variable this worker reads: (name, required, what it is).
ENVIRONMENT = (
    ("LIVEKIT_URL", True, "your LiveKit server, e.g. wss://your-project.livekit.cloud"),
    ("LIVEKIT_API_KEY", True, "the LiveKit project's API key"),
    ("LIVEKIT_API_SECRET", True, "the LiveKit project's API secret"),
    ("BITHUMAN_API_SECRET", True, "your bitHuman API secret (Developer > API Keys)"),
    ("OPENAI_API_KEY", True, "the voice session's speech and LLM (OpenAI Realtime)"),
    (
        "LIVEKIT_AGENT_NAME",
        False,
        f"the agent name to register (default {DEFAULT_AGENT_NAME}); the portal's Settings "
        "> LiveKit > Agent name must match",
    ),
    ("BITHUMAN_AGENT_ID", False, "the agent code for rooms whose dispatch names none"),
    ("AGENT_INSTRUCTIONS", False, "the voice session's system prompt"),
    ("OPENAI_VOICE", False, "the OpenAI Realtime voice (default alloy)"),
)
PACKAGES = ("livekit.agents", "livekit.plugins.bithuman", "livekit.plugins.openai", "PIL")


@dataclass(frozen=True)
class Settings:
    agent_name: str
    bithuman_api_secret: str
    default_agent_code: str
    instructions: str
    voice: str

    @classmethod
    def from_environment(cls, environ: dict[str, str]) -> Settings:
        return cls(
            agent_name=environ.get("LIVEKIT_AGENT_NAME") or DEFAULT_AGENT_NAME,
            bithuman_api_secret=environ.get("BITHUMAN_API_SECRET", ""),
            default_agent_code=environ.get("BITHUMAN_AGENT_ID", ""),
            instructions=environ.get("AGENT_INSTRUCTIONS") or DEFAULT_INSTRUCTIONS,
            voice=environ.get("OPENAI_VOICE") or "alloy",
        )


def missing_settings(environ: dict[str, str]) -> list[str]:
    return [name for name, required, _ in ENVIRONMENT if required and not environ.get(name)]


def agent_code_for(job_metadata: str, settings: Settings) -> str:
    """The bitHuman agent of one job: the dispatch metadata's `agent_code`, else the default."""
    try:
        meta: Any = json.loads(job_metadata) if job_metadata else {}
    except ValueError:
        meta = {}
    code = meta.get("agent_code") if isinstance(meta, dict) else None
    return str(code or settings.default_agent_code)


def load_dotenv(path: Path) -> None:
    """KEY=value lines of `.env` beside the worker (the environment wins)."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            os.environ.setdefault(key.strip(), value.strip().strip("'\""))


def parser() -> argparse.ArgumentParser:
    lines = [
        f"  {name:<20} {'required' if req else 'optional'}: {what}"
        for name, req, what in ENVIRONMENT
    ]
    epilog = "environment (or .env beside this file):\n" + "\n".join(lines)
    built = argparse.ArgumentParser(
        prog="worker.py",
        description=(
            "A LiveKit Agents worker that runs a bitHuman avatar (livekit-plugins-bithuman "
            "AvatarSession) for each room it is dispatched into by its agent name."
        ),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    built.add_argument(
        "command",
        nargs="?",
        choices=COMMANDS,
        help="LiveKit Agents' command: start (production), dev, console, download-files",
    )
    built.add_argument(
        "--check",
        action="store_true",
        help="check the settings and the installed packages, then exit (connects nowhere)",
    )
    return built


def check(environ: dict[str, str]) -> int:
    settings = Settings.from_environment(environ)
    missing = missing_settings(environ)
    absent = [name for name in PACKAGES if not _importable(name)]
    print(f"agent name: {settings.agent_name}")
    print(f"default agent code: {settings.default_agent_code or '(none: the dispatch names it)'}")
    if missing:
        print("missing settings: " + ", ".join(missing))
    if absent:
        print("missing packages: " + ", ".join(absent) + " (pip install -r requirements.txt)")
    if not missing and not absent:
        print("ok")
    return 1 if missing or absent else 0


def _importable(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def serve(settings: Settings, cli_args: list[str]) -> None:  # pragma: no cover (needs LiveKit)
    """Register with LiveKit and take jobs (the LiveKit packages are imported here)."""
    from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli
    from livekit.plugins import bithuman, openai

    server = AgentServer()

    @server.rtc_session(agent_name=settings.agent_name)
    async def entrypoint(ctx: JobContext) -> None:
        code = agent_code_for(ctx.job.metadata, settings)
        if not code:
            raise RuntimeError("no bitHuman agent code: not in the dispatch, no BITHUMAN_AGENT_ID")
        await ctx.connect()
        session = AgentSession(llm=openai.realtime.RealtimeModel(voice=settings.voice))
        avatar = bithuman.AvatarSession(avatar_id=code, api_secret=settings.bithuman_api_secret)
        # The avatar lip-syncs to the agent that starts it (sdk/livekit.md, multiple agents).
        await avatar.start(session, room=ctx.room)
        await session.start(agent=Agent(instructions=settings.instructions), room=ctx.room)

    sys.argv = [sys.argv[0], *cli_args]
    cli.run_app(server)


def main(argv: list[str] | None = None) -> int:
    args, rest = parser().parse_known_args(argv)
    load_dotenv(Path(__file__).with_name(".env"))
    environ = dict(os.environ)
    if args.check:
        return check(environ)
    if args.command is None:
        parser().print_help()
        return 2
    missing = missing_settings(environ)
    if missing:
        print("Set " + ", ".join(missing) + " (see .env.example).", file=sys.stderr)
        return 2
    serve(Settings.from_environment(environ), [args.command, *rest])
    return 0


if __name__ == "__main__":
    sys.exit(main())
