"""scripts/audit.py: how a pip-audit report becomes a verdict (the report shape is pip-audit's
documented JSON; the live service is not reachable from the build machines)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit", ROOT / "scripts" / "audit.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


audit = _audit()

REPORT = {
    "dependencies": [
        {"name": "django", "version": "6.1.3", "vulns": []},
        {
            "name": "pillow",
            "version": "13.0.0",
            "vulns": [
                {"id": "PYSEC-2099-1", "aliases": ["CVE-2099-1"], "fix_versions": ["13.0.1"]},
                {"id": "GHSA-xxxx-yyyy-zzzz", "aliases": [], "fix_versions": []},
            ],
        },
        {"name": "private-pkg", "skip_reason": "Dependency not found on PyPI"},
    ]
}


def test_findings_name_the_package_the_advisory_and_the_fix():
    findings, audited, skipped = audit.judge(REPORT, {})
    assert findings == [
        "pillow 13.0.0: PYSEC-2099-1 (fixed in 13.0.1)",
        "pillow 13.0.0: GHSA-xxxx-yyyy-zzzz (fixed in no fixed release yet)",
    ]
    assert (audited, skipped) == (2, 1)


def test_an_ignored_advisory_matches_by_id_or_alias():
    findings, _, _ = audit.judge(REPORT, {"CVE-2099-1": "not used", "GHSA-xxxx-yyyy-zzzz": "n/a"})
    assert findings == []


def test_ignore_file_requires_a_reason_for_each_id():
    text = "# header\n\nPYSEC-1  # only in the admin's unused export\n"
    assert audit.ignored_ids(text) == {"PYSEC-1": "only in the admin's unused export"}
    with pytest.raises(SystemExit, match="needs '# reason'"):
        audit.ignored_ids("PYSEC-2\n")


def test_the_committed_ignore_file_is_valid():
    audit.ignored_ids((ROOT / "requirements" / "audit-ignore.txt").read_text())
