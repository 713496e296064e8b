"""Security scans: Trivy (config, secrets in files, secrets in an image archive), hadolint on
Dockerfiles, gitleaks on the repository. Each writes its report (JSON, and SARIF for Trivy) as an
artifact and returns counts by severity. Secret values are redacted in every report.

Trivy's vulnerability database cannot be downloaded here, so its `vuln` scanner is not used.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipline.errors import TechnicalError

SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]
HADOLINT_LEVELS = {"error": "HIGH", "warning": "MEDIUM", "info": "LOW", "style": "LOW"}


@dataclass(frozen=True)
class ScanReport:
    """One scan's outcome: counts by severity and where its reports are."""

    tool: str
    target: str
    counts: dict[str, int]
    reports: list[str] = field(default_factory=list)

    def at_or_above(self, severities: list[str]) -> int:
        """How many findings have one of `severities`."""
        return sum(self.counts.get(s, 0) for s in severities)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "tool": self.tool,
            "target": self.target,
            "counts": self.counts,
            "reports": self.reports,
        }


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        raise TechnicalError(
            f"{name} is not installed", hint="install shipline with the 'scan' extra"
        )
    return found


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        tail = (done.stderr or done.stdout).strip().splitlines()
        raise TechnicalError(
            f"{Path(argv[0]).name} failed: {tail[-1] if tail else done.returncode}"
        )
    return done


def _count(values: list[str]) -> dict[str, int]:
    counts = Counter(v.upper() for v in values)
    return {s: counts.get(s, 0) for s in SEVERITIES}


def trivy(kind: str, target: str, out: Path, *, severity: str = "HIGH,CRITICAL") -> ScanReport:
    """`trivy config DIR`, `trivy fs --scanners secret DIR` or `trivy image --input TAR`."""
    exe = _tool("trivy")
    out.mkdir(parents=True, exist_ok=True)
    base = {
        "config": [exe, "config"],
        "secret": [exe, "fs", "--scanners", "secret"],
        "image": [exe, "image", "--scanners", "secret", "--input"],
    }[kind]
    common = [
        "--quiet",
        "--skip-db-update",
        "--offline-scan",
        "--severity",
        "UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL",
    ]
    if kind == "config":
        common = ["--quiet", "--severity", "UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL"]
    json_path, sarif_path = out / f"trivy-{kind}.json", out / f"trivy-{kind}.sarif"
    _run([*base, target, *common, "--format", "json", "--output", str(json_path)])
    _run([*base, target, *common, "--format", "sarif", "--output", str(sarif_path)])
    data = json.loads(json_path.read_text() or "{}")
    severities: list[str] = []
    for result in data.get("Results") or []:
        for item in (result.get("Misconfigurations") or []) + (result.get("Secrets") or []):
            severities.append(str(item.get("Severity", "UNKNOWN")))
    _ = severity
    return ScanReport(
        f"trivy-{kind}", target, _count(severities), [str(json_path), str(sarif_path)]
    )


def hadolint(dockerfile: str, out: Path) -> ScanReport:
    """Lint a Dockerfile."""
    exe = _tool("hadolint")
    out.mkdir(parents=True, exist_ok=True)
    done = _run([exe, "--no-fail", "--format", "json", dockerfile])
    findings = json.loads(done.stdout or "[]")
    report = out / "hadolint.json"
    report.write_text(json.dumps(findings, indent=2))
    return ScanReport(
        "hadolint",
        dockerfile,
        _count([HADOLINT_LEVELS.get(f.get("level", ""), "LOW") for f in findings]),
        [str(report)],
    )


def gitleaks(repo: str, out: Path) -> ScanReport:
    """Find committed secrets in a git repository (values redacted in the report)."""
    exe = _tool("gitleaks")
    out.mkdir(parents=True, exist_ok=True)
    report = out / "gitleaks.json"
    _run(
        [
            exe,
            "git",
            repo,
            "--no-banner",
            "--redact",
            "--exit-code",
            "0",
            "--report-format",
            "json",
            "--report-path",
            str(report),
            "--log-level",
            "error",
        ]
    )
    findings = json.loads(report.read_text() or "[]") if report.exists() else []
    return ScanReport("gitleaks", repo, _count(["HIGH"] * len(findings)), [str(report)])
