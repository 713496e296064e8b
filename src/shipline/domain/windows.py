"""Business-hours windows: parsing the config's text form and deciding whether a moment is inside.

Pure: the caller supplies the moment and the timezone object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, tzinfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(
    r"^\s*(?P<days>[A-Za-z]{3}(?:\s*-\s*[A-Za-z]{3})?(?:\s*,\s*[A-Za-z]{3}(?:\s*-\s*[A-Za-z]{3})?)*)"
    r"\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$"
)


class WindowSyntaxError(ValueError):
    """A window's text does not parse."""


@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday) and a [start, end) time of day."""

    days: frozenset[int]
    start: time
    end: time

    def __str__(self) -> str:
        runs: list[list[int]] = []
        for day in sorted(self.days):
            if runs and runs[-1][-1] == day - 1:
                runs[-1].append(day)
            else:
                runs.append([day])
        names = ",".join(
            DAYS[r[0]].capitalize() + (f"-{DAYS[r[-1]].capitalize()}" if len(r) > 1 else "")
            for r in runs
        )
        end = "24:00" if self.end == time.max else f"{self.end:%H:%M}"
        return f"{names} {self.start:%H:%M}-{end}"


def _parse_time(text: str) -> time:
    hours, minutes = (int(part) for part in text.split(":"))
    if hours == 24 and minutes == 0:
        return time.max
    if not (0 <= hours <= 23 and 0 <= minutes <= 59):
        raise WindowSyntaxError(f"'{text}' is not a time of day (00:00-24:00)")
    return time(hours, minutes)


def _parse_days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        bounds = [b.strip().lower() for b in part.split("-")]
        for name in bounds:
            if name not in DAYS:
                raise WindowSyntaxError(f"'{name}' is not a day (use Mon, Tue, ... Sun)")
        first, last = DAYS.index(bounds[0]), DAYS.index(bounds[-1])
        if last < first:
            raise WindowSyntaxError(f"day range '{part.strip()}' runs backwards")
        days.update(range(first, last + 1))
    return frozenset(days)


def parse_window(text: str) -> Window:
    """Parse 'Mon-Thu 09:00-16:00' (days, ranges and lists; 24-hour clock)."""
    match = _WINDOW.match(text)
    if not match:
        raise WindowSyntaxError(f"'{text}' is not a window like 'Mon-Thu 09:00-16:00'")
    start, end = _parse_time(match["start"]), _parse_time(match["end"])
    if end <= start:
        raise WindowSyntaxError(f"window '{text}' ends before it starts")
    return Window(days=_parse_days(match["days"]), start=start, end=end)


def in_window(windows: list[Window], moment: datetime, tz: tzinfo) -> bool:
    """True when `moment` (aware) falls inside any window, read in `tz`."""
    local = moment.astimezone(tz)
    now = local.time().replace(tzinfo=None)
    return any(local.weekday() in w.days and w.start <= now < w.end for w in windows)
