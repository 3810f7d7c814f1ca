"""The project needs nothing beside its own folder: a fresh clone runs its tests alone.

bitHuman's contract (openapi.yaml), its license and its docs are vendored under vendor/bithuman/;
no tracked file may reach outside the repository (the team's reference folder, a sibling named
"shared", is not there for someone who clones the project).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.sandbox import openapi

ROOT = Path(__file__).resolve().parents[1]
# A path out of the repository into the sibling folder, spelled as text ("../" + SIBLING) or
# built with pathlib (parents[N].parent joined with SIBLING).
SIBLING = "shared"
OUTSIDE = re.compile(r"\.\./" + SIBLING + r"|parents\[\d\]\.parent\s*/\s*[\"']" + SIBLING)


def _tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [name for name in listed.stdout.splitlines() if (ROOT / name).is_file()]


def test_no_file_reaches_outside_the_repository():
    # The pattern finds both spellings (built here so this file does not hold them itself).
    assert OUTSIDE.search("spec = ROOT / '../" + SIBLING + "/bithuman/openapi.yaml'")
    assert OUTSIDE.search("Path(__file__).parents[2].parent / '" + SIBLING + "/x.yaml'")
    offenders = []
    for name in _tracked_files():
        if name.startswith("vendor/") or name == Path(__file__).relative_to(ROOT).as_posix():
            continue
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if OUTSIDE.search(text):
            offenders.append(name)
    assert not offenders, f"these files read outside the repository: {offenders}"


def test_the_contract_and_its_license_are_vendored():
    assert openapi.spec_path().resolve().is_relative_to(ROOT)
    assert openapi.spec()["openapi"].startswith("3.")
    vendored = ROOT / "vendor" / "bithuman"
    assert "Apache License" in (vendored / "LICENSE").read_text()
    assert "Source" in (vendored / "SOURCE.md").read_text()
    assert (vendored / "docs" / "api" / "agents.md").is_file()


def test_a_copy_with_nothing_beside_it_runs_the_contract_tests(tmp_path):
    """Copy the project (its tracked files only) into an empty folder and run the tests that
    validate the sandbox against openapi.yaml there, on the embedded defaults (SQLite, no Redis)."""
    clone = tmp_path / "alone" / "main"
    for name in _tracked_files():
        target = clone / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    assert not (clone.parent / "shared").exists()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "BITHUMAN_OPENAPI"}
    }
    env.update(PORTAL_VAR_DIR=str(tmp_path / "var"), DJANGO_DEBUG="true")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/sandbox/test_contract.py",
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
