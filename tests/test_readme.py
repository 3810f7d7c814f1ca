"""The README documents every setting the code reads, and the two commands."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_environment_variable_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    read_by_code = set()
    for path in [
        ROOT / "portal" / "settings.py",
        *ROOT.glob("*/conf.py"),
        *ROOT.glob("portal/*/conf.py"),
    ]:
        read_by_code |= set(re.findall(r'env\.\w+\(\s*"([A-Z_][A-Z0-9_]*)"', path.read_text()))
    assert read_by_code, "the settings parser found nothing: fix this test"
    missing = sorted(v for v in read_by_code if f"| `{v}`" not in readme)
    assert not missing, f"Document these in the README's configuration table: {missing}"


def test_readme_shows_the_two_commands_and_ci_calls_make_test():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_shows_every_screenshot_that_make_screenshots_writes():
    readme = (ROOT / "README.md").read_text()
    shown = set(re.findall(r"docs/screenshots/([\w-]+\.png)", readme))
    script = (ROOT / "tests" / "browser" / "test_screenshots.py").read_text()
    written = {f"{name}.png" for name in re.findall(r'\("([\w-]+)", "(?:light|dark)"', script)}
    assert written and shown == written
    assert all((ROOT / "docs" / "screenshots" / name).is_file() for name in shown)
    assert "screenshots:" in (ROOT / "Makefile").read_text()
