"""QuikApp security gate: Trivy's misconfiguration scan of what is deployed (the Kubernetes
manifests and Dockerfiles), gitleaks over the same files, and OWASP ZAP's baseline scan of each
deployed address where `zap-baseline.py` is installed (it is not installable everywhere: then
its test case says so and is skipped). A HIGH or CRITICAL misconfiguration or any leaked secret
fails the gate. Writes a JUnit report to $SHIPLINE_ARTIFACTS/junit.xml."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import quoteattr

HERE = Path(__file__).resolve().parent.parent  # the QuikApp project folder
SCANNED = [HERE / "k8s", HERE / "docker"]
TOOLS = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent)])


def tool(name: str) -> str | None:
    return shutil.which(name, path=TOOLS)


def trivy(artifacts: Path) -> tuple[str | None, str | None]:
    """(failure, skipped) of Trivy's config scan at HIGH and CRITICAL."""
    binary = tool("trivy")
    if binary is None:
        return None, "trivy is not installed here"
    found = 0
    for folder in SCANNED:
        report = artifacts / f"trivy-{folder.name}.json"
        subprocess.run([binary, "config", "--quiet", "--format", "json", "--severity",
                        "HIGH,CRITICAL", "--output", str(report), str(folder)],
                       check=True, capture_output=True)  # fmt: skip
        results = json.loads(report.read_text()).get("Results") or []
        found += sum(len(r.get("Misconfigurations") or []) for r in results)
    print(f"security trivy: {found} HIGH/CRITICAL misconfiguration(s)")
    return (f"{found} HIGH/CRITICAL misconfiguration(s)" if found else None), None


def gitleaks(artifacts: Path) -> tuple[str | None, str | None]:
    """(failure, skipped) of gitleaks over the deployed files (values redacted)."""
    binary = tool("gitleaks")
    if binary is None:
        return None, "gitleaks is not installed here"
    found = 0
    for folder in SCANNED:
        report = artifacts / f"gitleaks-{folder.name}.json"
        subprocess.run([binary, "detect", "--no-git", "--source", str(folder), "--redact",
                        "--no-banner", "-l", "error", "--report-format", "json",
                        "--report-path", str(report), "--exit-code", "0"],
                       check=True, capture_output=True)  # fmt: skip
        found += len(json.loads(report.read_text() or "[]"))
    print(f"security gitleaks: {found} secret(s)")
    return (f"{found} secret(s) in deployed files" if found else None), None


def zap(artifacts: Path) -> tuple[str | None, str | None]:
    """(failure, skipped) of ZAP's baseline scan of every deployed address."""
    binary = tool("zap-baseline.py")
    if binary is None:
        print("security zap: not run: zap-baseline.py is not installed here")
        return None, "zap-baseline.py is not installed here"
    failed = []
    for service, address in sorted(json.loads(os.environ["SHIPLINE_ADDRESSES"]).items()):
        done = subprocess.run([binary, "-t", address, "-J", str(artifacts / f"zap-{service}.json")],
                              check=False, capture_output=True)  # fmt: skip
        if done.returncode not in (0, 2):  # 2: warnings only
            failed.append(service)
    return (f"alerts on {', '.join(failed)}" if failed else None), None


def main() -> int:
    artifacts = Path(os.environ["SHIPLINE_ARTIFACTS"])
    cases = [(name, *scan(artifacts)) for name, scan in
             (("trivy-config", trivy), ("gitleaks", gitleaks), ("zap-baseline", zap))]  # fmt: skip
    body = "".join(
        f"<testcase classname='security' name={quoteattr(name)}>"
        + (f"<failure message={quoteattr(failure)}/>" if failure else "")
        + (f"<skipped message={quoteattr(skipped)}/>" if skipped else "")
        + "</testcase>"
        for name, failure, skipped in cases
    )
    failures = sum(1 for _, failure, _ in cases if failure)
    skipped = sum(1 for _, _, skip in cases if skip)
    (artifacts / "junit.xml").write_text(
        f"<testsuite name='security' tests='{len(cases)}' failures='{failures}'"
        f" skipped='{skipped}'>{body}</testsuite>\n"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
