"""Writes a JUnit XML report (standard library only) for the reference gates."""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import quoteattr


def write(suite: str, cases: list[tuple[str, str | None]]) -> None:
    """cases: (name, failure message or None) into $SHIPLINE_ARTIFACTS/junit.xml."""
    failures = sum(1 for _, failure in cases if failure)
    body = "".join(
        f"<testcase classname={quoteattr(suite)} name={quoteattr(name)}>"
        + (f"<failure message={quoteattr(failure)}/>" if failure else "")
        + "</testcase>"
        for name, failure in cases
    )
    xml = (
        f'<?xml version="1.0"?><testsuite name={quoteattr(suite)} tests="{len(cases)}" '
        f'failures="{failures}">{body}</testsuite>'
    )
    Path(os.environ["SHIPLINE_ARTIFACTS"], "junit.xml").write_text(xml)
