"""How an audit record's details read in a table (the CLI's, the web page's)."""

from __future__ import annotations

from typing import Any

import pytest

from shipline.domain.audit import details_text

FIVE = {f"s{i}": f"1.{i}.0" for i in range(1, 6)}


@pytest.mark.parametrize(
    ("details", "text"),
    [
        ({"run": 7, "phase": "failed"}, "run: 7; phase: failed"),
        # what is unset is left out
        ({"run": 7, "release": None, "reason": "", "names": []}, "run: 7"),
        # a run's services: the first few and how many more
        ({"services": FIVE}, "services: s1 1.1.0, s2 1.2.0, s3 1.3.0 and 2 more"),
        ({"services": {"api": "1.0.0"}}, "services: api 1.0.0"),
        ({"services": {"api": "", "web": ""}}, "services: api, web"),  # a rollback's: no version
        ({"names": ["A", "B"]}, "names: A, B"),
        (None, ""),
        ("plain", "plain"),
    ],
)
def test_details_text(details: Any, text: str) -> None:
    assert details_text(details) == text
