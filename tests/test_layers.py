"""The layers (README "Architecture") hold, and the contract that checks them can fail.

`make lint` runs import-linter with the contracts in pyproject.toml. These tests run the same
check on a copy of the code with one backwards import added, so a contract that matches nothing
(a typo in a module pattern) cannot pass silently; and they import each app's API module first
in a fresh process, which the layers make possible (no import-order guard)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ["portal", "activity", "organizations", "agents", "sessions", "interfaces", "sandbox"]


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    for package in PACKAGES:
        if (ROOT / package).is_dir():
            shutil.copytree(
                ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
            )
    return tree


def _add_import(tree: Path, module: str, line: str) -> None:
    path = tree / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_contracts_hold_on_this_tree():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # A service borrowing an API module's serializer: the cycle this issue removed.
        ("agents.services", "from agents import api", "Domain code imports no api"),
        ("sessions.selectors", "from sessions import views", "Domain code imports no api"),
        # A lower layer reaching up.
        ("activity.services", "from sessions import models", "Layers:"),
        ("portal.tenancy", "from organizations import services", "Layers:"),
        ("agents.services", "from interfaces import dashboard", "Layers:"),
        # The simulator sharing code with the client it tests, either way.
        ("sandbox.services", "from portal.bithuman import webhooks", "The sandbox imports nothing"),
        ("organizations.services", "from sandbox import services", "The portal imports nothing"),
    ],
)
def test_a_backwards_import_breaks_make_lint(tmp_path: Path, module: str, line: str, contract: str):
    tree = _copy(tmp_path)
    assert _lint(tree).returncode == 0  # the copy alone is clean
    _add_import(tree, module, line)
    result = _lint(tree)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if " BROKEN" in row]
    assert any(row.startswith(contract) for row in broken), result.stdout[-3000:]


@pytest.mark.parametrize(
    "module",
    ["agents.api", "sessions.api", "activity.api", "organizations.api", "interfaces.api"],
)
def test_each_api_module_imports_first_in_a_fresh_process(module: str):
    code = (
        "import django, sys\n"
        "django.setup()\n"
        f"import {module}\n"
        "assert 'interfaces.urls' not in sys.modules\n"
        "print('ok')\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_the_readme_tree_the_folders_and_the_contract_tell_the_same_story():
    """The README's architecture tree lists the layers bottom to top, as the contract (top to
    bottom) orders them, and every package the contract names is a folder of the repository."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    tree = section.split("```", 2)[1]
    folders = [line.split("/", 1)[0] for line in tree.splitlines() if line[:1].isalpha()]
    assert [f for f in folders if f in layers] == list(reversed(layers))
    for package in config["root_packages"]:
        assert (ROOT / package / "__init__.py").is_file(), package
        assert package in folders, f"{package}/ is missing from the README tree"
