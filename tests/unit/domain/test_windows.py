"""Business-hours windows: parsing, and moments inside or outside in several timezones."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from shipline.domain.windows import WindowSyntaxError, in_window, parse_window

PROD = [parse_window("Mon-Thu 09:00-16:00"), parse_window("Fri 09:00-12:00")]


@pytest.mark.parametrize(
    ("text", "days", "start", "end"),
    [
        ("Mon-Thu 09:00-16:00", {0, 1, 2, 3}, time(9), time(16)),
        ("fri 9:00-12:00", {4}, time(9), time(12)),
        ("Sat,Sun 10:00-14:30", {5, 6}, time(10), time(14, 30)),
        ("Mon-Tue,Thu 00:00-24:00", {0, 1, 3}, time(0), time.max),
    ],
)
def test_parse(text: str, days: set[int], start: time, end: time) -> None:
    window = parse_window(text)
    assert (window.days, window.start, window.end) == (days, start, end)


@pytest.mark.parametrize(
    "text",
    [
        "Mon-Thu",
        "Mon 9-16",
        "Mon 16:00-09:00",
        "Thu-Mon 09:00-10:00",
        "Mun 09:00-10:00",
        "Mon 25:00-26:00",
        "Mon 09:60-10:00",
        "",
    ],
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(WindowSyntaxError):
        parse_window(text)


NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("moment", "tz", "inside"),
    [
        (datetime(2026, 11, 23, 14, 0, tzinfo=UTC), NY, True),  # Mon 09:00 EST
        (datetime(2026, 11, 23, 13, 59, tzinfo=UTC), NY, False),  # Mon 08:59 EST
        (datetime(2026, 11, 23, 20, 59, tzinfo=UTC), NY, True),  # Mon 15:59 EST
        (datetime(2026, 11, 23, 21, 0, tzinfo=UTC), NY, False),  # Mon 16:00 EST: end excluded
        (datetime(2026, 11, 27, 16, 59, tzinfo=UTC), NY, True),  # Fri 11:59 EST
        (datetime(2026, 11, 27, 17, 0, tzinfo=UTC), NY, False),  # Fri 12:00 EST
        (datetime(2026, 11, 28, 15, 0, tzinfo=UTC), NY, False),  # Saturday
        (datetime(2026, 11, 24, 2, 0, tzinfo=UTC), ZoneInfo("Asia/Tokyo"), True),  # Tue 11:00 JST
        (datetime(2026, 11, 24, 2, 0, tzinfo=UTC), NY, False),  # Mon 21:00 EST
        # DST: on Sun 2026-03-08 New York springs forward; Mon 09:00 EDT is 13:00 UTC
        (datetime(2026, 3, 9, 13, 0, tzinfo=UTC), NY, True),
        (datetime(2026, 3, 9, 12, 30, tzinfo=UTC), NY, False),  # 08:30 EDT (would be 07:30 EST)
        # DST ends Sun 2026-11-01; Mon 09:00 EST is 14:00 UTC
        (datetime(2026, 11, 2, 13, 30, tzinfo=UTC), NY, False),  # 08:30 EST
        (datetime(2026, 3, 30, 7, 0, tzinfo=UTC), ZoneInfo("Europe/Berlin"), True),  # 09:00 CEST
        (datetime(2026, 3, 30, 6, 59, tzinfo=UTC), ZoneInfo("Europe/Berlin"), False),
    ],
)
def test_in_window(moment: datetime, tz: ZoneInfo, inside: bool) -> None:
    assert in_window(PROD, moment, tz) is inside


def test_window_text_round_trips() -> None:
    for text in ("Mon-Thu 09:00-16:00", "Fri 09:00-12:00", "Mon,Wed,Fri 08:00-24:00"):
        assert str(parse_window(text)) == text
