"""examples/livekit_worker: the worker a customer deploys for LiveKit sessions starts (its
--help and its --check) without the LiveKit Agents packages, which the portal does not install;
the rest of it compiles, reads the job metadata the portal dispatches with, and its .env.example
names every setting it reads."""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKER_DIR = ROOT / "examples" / "livekit_worker"
WORKER = WORKER_DIR / "worker.py"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "BITHUMAN_"))}
    base.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, str(WORKER), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        cwd=WORKER_DIR,
        check=False,
    )


def _module():
    spec = importlib.util.spec_from_file_location("livekit_worker", WORKER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["livekit_worker"] = module
    spec.loader.exec_module(module)
    return module


def test_the_livekit_agents_packages_are_not_installed_here():
    # What the other tests rely on: they show the worker starts without them.
    assert importlib.util.find_spec("livekit.agents") is None


def test_help_starts_without_the_livekit_packages_and_names_every_setting():
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    assert "bitHuman avatar" in result.stdout and "agent name" in result.stdout
    for command in ("start", "dev"):
        assert command in result.stdout
    for name, _required, _what in _module().ENVIRONMENT:
        assert name in result.stdout


def test_check_reports_what_is_missing_and_fails():
    result = _run("--check")
    assert result.returncode == 1
    assert "agent name: bithuman-avatar" in result.stdout
    assert "missing settings: LIVEKIT_URL, LIVEKIT_API_KEY" in result.stdout
    assert "missing packages: livekit.agents" in result.stdout

    configured = {
        "LIVEKIT_URL": "wss://acme.livekit.cloud",
        "LIVEKIT_API_KEY": "APIkey",
        "LIVEKIT_API_SECRET": "secret",
        "BITHUMAN_API_SECRET": "bh-secret",
        "OPENAI_API_KEY": "sk-test",
        "LIVEKIT_AGENT_NAME": "acme-avatar",
    }
    result = _run("--check", env=configured)
    assert "agent name: acme-avatar" in result.stdout
    assert "missing settings" not in result.stdout
    assert "bh-secret" not in result.stdout + result.stderr
    # Starting for real without settings says what to set, before importing anything.
    result = _run("start")
    assert result.returncode == 2 and "Set LIVEKIT_URL" in result.stderr


def test_the_worker_compiles_and_reads_the_portals_dispatch_metadata():
    py_compile.compile(str(WORKER), doraise=True)
    worker = _module()
    settings = worker.Settings.from_environment({"BITHUMAN_AGENT_ID": "A00DEF0000"})
    portal_metadata = json.dumps({"agent_code": "A78WKV4515", "agent_name": "Ava"})
    assert worker.agent_code_for(portal_metadata, settings) == "A78WKV4515"
    assert worker.agent_code_for("", settings) == "A00DEF0000"
    assert worker.agent_code_for("not json", settings) == "A00DEF0000"


def test_env_example_and_requirements_cover_what_the_worker_needs():
    example = (WORKER_DIR / ".env.example").read_text()
    for name, _required, _what in _module().ENVIRONMENT:
        assert f"{name}=" in example
    requirements = (WORKER_DIR / "requirements.txt").read_text()
    for package in ("livekit-agents", "livekit-plugins-bithuman", "pillow"):
        assert package in requirements
