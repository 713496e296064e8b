"""A tool's non-zero exit is classified: the work said no (failed) or something broke (errored)."""

from __future__ import annotations

import pytest

from shipline.errors import RuleError, TechnicalError
from shipline.process import ToolBroke, classify_exit

CASES = [
    (1, ["FAIL: TestLogin (0.01s)"], RuleError),
    (2, ["error: COPY failed: file not found in build context"], RuleError),
    (
        1,
        ["Error: pinging registry: dial tcp 127.0.0.1:5000: connect: connection refused"],
        ToolBroke,
    ),
    (1, ["Get https://r.example/v2/: dial tcp: lookup r.example: no such host"], ToolBroke),
    (1, ["received unexpected HTTP status: 503 Service Unavailable"], ToolBroke),
    (1, ["write /var/lib/containers: no space left on device"], ToolBroke),
    (127, ["sh: 1: mvn: not found"], ToolBroke),
    (137, [], ToolBroke),
    (-9, [], ToolBroke),
]


@pytest.mark.parametrize(
    ("code", "lines", "kind"),
    CASES,
    ids=["test-failed", "build-failed", "registry-down", "dns", "503", "disk-full",
         "not-found", "oom-killed", "signal"],
)  # fmt: skip
def test_exits_are_classified(code: int, lines: list[str], kind: type[Exception]) -> None:
    found = classify_exit(code, lines, "tool")
    assert isinstance(found, kind)
    assert isinstance(found, TechnicalError) != isinstance(found, RuleError)
    assert f"exit {code}" in found.message
