"""The one backoff rule."""

from __future__ import annotations

import pytest

from shipline.domain.retry import backoff_delay


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "expected"),
    [(1, 0.5, None, 0.5), (2, 0.5, None, 1.0), (3, 0.5, None, 2.0), (4, 1, 5.0, 5.0),
     (1, 0, None, 0.0), (0, 1, None, 1.0), (100, 1, 60.0, 60.0)],
    ids=["first", "second", "third", "capped", "zero-base", "attempt-0", "huge-attempt"],
)  # fmt: skip
def test_backoff_doubles_from_the_base_up_to_the_cap(
    attempt: int, base: float, cap: float | None, expected: float
) -> None:
    assert backoff_delay(attempt, base, cap=cap) == expected
