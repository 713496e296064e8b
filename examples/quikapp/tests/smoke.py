"""QuikApp smoke gate: every deployed service answers its health path, and (where it says which
version it runs, as the demo workload does at /version) runs the version promoted. Writes a
JUnit report to $SHIPLINE_ARTIFACTS/junit.xml. Standard library only."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from xml.sax.saxutils import quoteattr


def check(address: str, health: str, version: str) -> str | None:
    """None when the service is fine, else what is wrong."""
    try:
        with urllib.request.urlopen(f"{address}{health}", timeout=5) as answer:
            if answer.status >= 300:
                return f"{health} answered {answer.status}"
    except (OSError, urllib.error.URLError) as exc:
        return f"{health} did not answer: {exc}"
    try:
        with urllib.request.urlopen(f"{address}/version", timeout=5) as answer:
            seen = json.loads(answer.read()).get("version")
    except (OSError, ValueError):
        return None  # a service that does not say its version
    return None if seen in (None, version) else f"runs {seen}, not {version}"


def main() -> int:
    addresses = json.loads(os.environ["SHIPLINE_ADDRESSES"])
    versions = json.loads(os.environ["SHIPLINE_VERSIONS"])
    health = json.loads(os.environ.get("SHIPLINE_HEALTH_PATHS") or "{}")
    cases = []
    for service, version in sorted(versions.items()):
        found = (
            check(addresses[service], health.get(service, "/health"), version)
            if service in addresses
            else "not deployed"
        )
        cases.append((service, found))
        print(f"smoke {service}: {found or 'ok'}")
    body = "".join(
        f"<testcase classname='smoke' name={quoteattr(name)}>"
        + (f"<failure message={quoteattr(problem)}/>" if problem else "")
        + "</testcase>"
        for name, problem in cases
    )
    failures = sum(1 for _, problem in cases if problem)
    Path(os.environ["SHIPLINE_ARTIFACTS"], "junit.xml").write_text(
        f"<?xml version='1.0'?><testsuite name='smoke' tests='{len(cases)}'"
        f" failures='{failures}'>{body}</testsuite>"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
