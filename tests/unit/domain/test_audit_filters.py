"""`audit list`'s filters: times as users write them, compared as times, not as text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shipline.domain.audit import select_records, time_bound
from shipline.errors import UserError

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "end_of_day", "expected"),
    [
        ("2026-11-26", False, datetime(2026, 11, 26, tzinfo=UTC)),
        ("2026-11-26", True, datetime(2026, 11, 26, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2026-11-26T14:30", False, datetime(2026, 11, 26, 14, 30, tzinfo=UTC)),
        ("2026-11-26 14:30", False, datetime(2026, 11, 26, 14, 30, tzinfo=UTC)),
        ("2026-11-26T14:30+02:00", False, datetime(2026, 11, 26, 12, 30, tzinfo=UTC)),
        ("2026-11-26T14:30:00Z", True, datetime(2026, 11, 26, 14, 30, tzinfo=UTC)),
        ("30m", False, datetime(2026, 11, 28, 19, 30, tzinfo=UTC)),
        ("12h", True, datetime(2026, 11, 28, 8, 0, tzinfo=UTC)),
        ("7d", False, datetime(2026, 11, 21, 20, 0, tzinfo=UTC)),
        ("2w", False, datetime(2026, 11, 14, 20, 0, tzinfo=UTC)),
        (" 45s ", False, datetime(2026, 11, 28, 19, 59, 15, tzinfo=UTC)),
    ],
)
def test_a_time_bound_as_users_write_it(text: str, end_of_day: bool, expected: datetime) -> None:
    assert time_bound(text, now=NOW, end_of_day=end_of_day) == expected


@pytest.mark.parametrize("text", ["yesterday", "", "7 days ago", "2026-13-01", "5y", "-3d"])
def test_what_is_not_a_time_is_refused_with_the_forms_that_are(text: str) -> None:
    with pytest.raises(UserError) as caught:
        time_bound(text, now=NOW)
    assert repr(text) in str(caught.value) and "30m" in (caught.value.hint or "")


def _record(seq: int, time: str) -> dict[str, object]:
    return {"seq": seq, "time": time, "actor": "ann", "action": "run.start", "details": {}}


def test_records_are_compared_by_instant_not_by_text() -> None:
    records = [
        _record(1, "2026-11-27T23:30:00.000+00:00"),
        _record(2, "2026-11-28T01:30:00.000+02:00"),  # 2026-11-27T23:30 UTC
        _record(3, "2026-11-28T09:00:00.000+00:00"),
        _record(4, "2026-11-28T19:45:00.000+00:00"),
    ]

    def seqs(**bounds: str) -> list[int]:
        return [int(str(r["seq"])) for r in select_records(records, now=NOW, **bounds)]

    assert seqs(since="2026-11-28") == [4, 3]  # record 2 is the 27th in UTC
    assert seqs(until="2026-11-27") == [2, 1]  # a date alone: that whole day
    assert seqs(since="2026-11-28 08:00", until="2026-11-28T10:00") == [3]
    assert seqs(since="1h") == [4]
    assert seqs(since="2026-11-28T00:00+01:00") == [4, 3, 2, 1]
    with pytest.raises(UserError):
        seqs(until="tomorrow")
