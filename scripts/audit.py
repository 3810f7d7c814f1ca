"""Audit the installed, pinned dependencies for known vulnerabilities (run by `make lint`).

pip-audit reads the lock files (requirements/dev.txt, which holds dev + prod, and
requirements/prod.txt: every direct and transitive package pinned with hashes, no resolution)
and checks each pin against PyPI's advisory data (`AUDIT_SERVICE=osv` for OSV). Outcomes:

- a vulnerability not listed in requirements/audit-ignore.txt: exit 1, with the fix versions;
- no vulnerability: exit 0;
- the advisory service unreachable (these build machines reach PyPI's package index but not its
  per-release JSON API nor OSV): a loud notice and exit 0, or exit 2 with AUDIT_STRICT=true, which
  is what a release pipeline with network access should set.

requirements/audit-ignore.txt holds one advisory id per line followed by `# why it does not apply`;
a line without a reason is refused, so an ignored finding is always explained.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE_FILE = ROOT / "requirements" / "audit-ignore.txt"
LOCKS = (ROOT / "requirements" / "dev.txt", ROOT / "requirements" / "prod.txt")
UNREACHABLE = re.compile(r"could not be audited|Connection|timed out", re.IGNORECASE)


def ignored_ids(text: str) -> dict[str, str]:
    """Advisory id -> reason, from the ignore file's text; a missing reason is an error."""
    ids: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        advisory, _, reason = line.partition("#")
        if not reason.strip():
            raise SystemExit(f"{IGNORE_FILE.name}:{number}: '{advisory.strip()}' needs '# reason'")
        ids[advisory.strip()] = reason.strip()
    return ids


def judge(report: dict, ignore: dict[str, str]) -> tuple[list[str], int, int]:
    """(findings not ignored, packages audited, packages skipped) from pip-audit's JSON report."""
    findings: list[str] = []
    audited = skipped = 0
    for dependency in report.get("dependencies", []):
        if dependency.get("skip_reason"):
            skipped += 1
            continue
        audited += 1
        for vuln in dependency.get("vulns", []):
            names = {vuln["id"], *vuln.get("aliases", [])}
            if names & ignore.keys():
                continue
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed release yet"
            findings.append(
                f"{dependency['name']} {dependency['version']}: {vuln['id']} (fixed in {fixes})"
            )
    return findings, audited, skipped


def main() -> int:
    ignore = ignored_ids(IGNORE_FILE.read_text() if IGNORE_FILE.exists() else "")
    service = os.environ.get("AUDIT_SERVICE", "pypi")
    strict = os.environ.get("AUDIT_STRICT", "false").lower() == "true"
    command = [sys.executable, "-m", "pip_audit", "--disable-pip", "--no-deps", "-f", "json"]
    for lock in LOCKS:
        command += ["-r", str(lock)]
    command += ["--progress-spinner", "off", "--vulnerability-service", service, "--timeout", "10"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        report = json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        report = {}
    findings, audited, skipped = judge(report, ignore)
    if findings:
        print("audit: known vulnerabilities in the pinned dependencies:", file=sys.stderr)
        for finding in findings:
            print(f"  {finding}", file=sys.stderr)
        print(
            "Bump the pin in requirements/ to a fixed release, or add the id to "
            "requirements/audit-ignore.txt with '# why it does not apply'.",
            file=sys.stderr,
        )
        return 1
    if audited == 0:
        reasons = [d["skip_reason"] for d in report.get("dependencies", []) if "skip_reason" in d]
        why = reasons[:1] or result.stderr.strip().splitlines()[-1:] or ["no answer"]
        if skipped or UNREACHABLE.search(result.stderr) or result.returncode:
            print(
                f"\033[1;33maudit: NOT PERFORMED: the '{service}' advisory service did not answer "
                f"from this machine ({skipped} packages skipped; {why[0]}). Run `make audit` "
                "where it is reachable (AUDIT_STRICT=true fails instead).\033[0m",
                file=sys.stderr,
            )
            return 2 if strict else 0
    print(f"audit: {audited} packages checked against '{service}', no known vulnerability")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
