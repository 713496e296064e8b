"""The audit trail's chain: each record's MAC covers its body and the previous record's MAC.

The MAC is HMAC-SHA256 under a key kept outside the state store, so a database writer can neither
edit a record nor recompute the chain after one. A changed, inserted or removed record breaks the
chain; the head (the newest record's number and MAC, kept apart from the records) shows a removed
tail; a head exported earlier (`audit head`) shows a rewound or emptied log. Pure functions; the
store keeps the records. Without a key (`key=None`) the chain is plain SHA-256, as written before
keys existed: such a chain is re-sealed under the key once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shipline.errors import UserError

GENESIS = "0" * 64


def digest(previous: str, body: dict[str, Any], key: bytes | None = None) -> str:
    """The MAC (the plain hash without a key) of `body` chained to `previous`."""
    canonical = (previous + json.dumps(body, sort_keys=True, separators=(",", ":"))).encode()
    if key is None:
        return hashlib.sha256(canonical).hexdigest()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def rechained(records: Sequence[dict[str, Any]], key: bytes) -> list[dict[str, Any]]:
    """`records` chained again under `key` (bodies unchanged but for their links)."""
    out: list[dict[str, Any]] = []
    previous = GENESIS
    for record in records:
        body = {**{k: v for k, v in record.items() if k != "hash"}, "prev": previous}
        previous = digest(previous, body, key)
        out.append({**body, "hash": previous})
    return out


def chained(
    previous: str,
    seq: int,
    time: str,
    actor: str,
    action: str,
    details: dict[str, Any],
    key: bytes | None = None,
) -> dict[str, Any]:
    """A new record following the one whose hash is `previous`."""
    body = {
        "seq": seq,
        "time": time,
        "actor": actor,
        "action": action,
        "details": details,
        "prev": previous,
    }
    return {**body, "hash": digest(previous, body, key)}


@dataclass(frozen=True)
class AuditProblem:
    """Where the chain breaks (`line`: the position of the record, from 1)."""

    line: int
    message: str


def verify_chain(
    records: Sequence[dict[str, Any] | None],
    head: tuple[int, str] | None,
    key: bytes | None = None,
    exported: tuple[int, str] | None = None,
) -> list[AuditProblem]:
    """Problems in `records` (oldest first; None for one that cannot be read) given the `head`
    (seq and MAC of the newest record written) and a head `exported` earlier for safekeeping;
    empty when every record is intact and in place."""
    problems: list[AuditProblem] = []
    previous, expected_seq = GENESIS, 1
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or "hash" not in record:
            problems.append(AuditProblem(number, "not a valid record"))
            continue
        body = {k: v for k, v in record.items() if k != "hash"}
        if body.get("seq") != expected_seq:
            problems.append(
                AuditProblem(number, f"sequence {body.get('seq')}, expected {expected_seq}")
            )
        if body.get("prev") != previous:
            problems.append(AuditProblem(number, "does not follow the previous record"))
        if not hmac.compare_digest(digest(str(body.get("prev")), body, key), str(record["hash"])):
            problems.append(AuditProblem(number, "record was changed"))
        previous = str(record["hash"])
        seq = body.get("seq")
        expected_seq = (seq if isinstance(seq, int) else expected_seq) + 1
    readable_end = bool(records) and isinstance(records[-1], dict)
    if head is not None and head[1] != previous and (readable_end or not records):
        last = expected_seq - 1
        problems.append(
            AuditProblem(
                last,
                f"the log ends at record {last}, but record {head[0]} was written:"
                " records were removed",
            )
        )
    if exported is not None:
        problems += _against_export(records, exported)
    return problems


def _against_export(
    records: Sequence[dict[str, Any] | None], exported: tuple[int, str]
) -> list[AuditProblem]:
    seq, mac = exported
    found = next((r for r in records if isinstance(r, dict) and r.get("seq") == seq), None)
    if found is None:
        return [
            AuditProblem(
                seq,
                f"record {seq} of the exported head is gone: the log was rewound or emptied",
            )
        ]
    if not hmac.compare_digest(str(found.get("hash")), mac):
        return [AuditProblem(seq, f"record {seq} differs from the exported head: rewritten")]
    return []


def parse_head(text: str) -> tuple[int, str]:
    """`SEQ:MAC` as `audit head` prints it; ValueError when it is not."""
    seq, sep, mac = text.strip().partition(":")
    if (
        not sep
        or not seq.isdigit()
        or len(mac) != 64
        or any(c not in "0123456789abcdef" for c in mac)
    ):
        raise ValueError("a head is SEQ:MAC as `shipline audit head` prints it")
    return int(seq), mac


def _mentions(details: Any, key: str, value: str) -> bool:
    if not isinstance(details, dict):
        return False
    found = details.get(key)
    if found == value:
        return True
    if key == "environment" and value in (details.get("environments") or []):
        return True
    return isinstance(found, (dict, list)) and value in found


_AGO = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def time_bound(text: str, *, now: datetime, end_of_day: bool = False) -> datetime:
    """The instant a `--since`/`--until` filter names: an ISO date or time (UTC unless it says
    its offset) or a span ago (`30m`, `12h`, `7d`, `2w`). A date alone is the start of that day,
    or its end with `end_of_day` (`--until 2026-11-30` includes the 30th)."""
    given = text.strip()
    ago = _AGO.fullmatch(given)
    if ago:
        return now - timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        day = date.fromisoformat(given)
    except ValueError:
        pass
    else:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start + timedelta(days=1) - timedelta(microseconds=1) if end_of_day else start
    try:
        instant = datetime.fromisoformat(given)
    except ValueError:
        raise UserError(
            f"{text!r} is not a time",
            hint="give an ISO date or time (2026-11-26, 2026-11-26T14:30, 2026-11-26T14:30+01:00)"
            " or a span ago (30m, 12h, 7d, 2w)",
        ) from None
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def select_records(
    records: Sequence[dict[str, Any]],
    *,
    environment: str | None = None,
    service: str | None = None,
    actor: str | None = None,
    since: str | None = None,
    until: str | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The records that match every filter given, newest first. `since`/`until` are read by
    `time_bound` (a UserError when they are not times) and compared with each record's time;
    a service matches a record naming it alone or among its services."""
    moment = now or datetime.now(UTC)
    low = time_bound(since, now=moment) if since else None
    high = time_bound(until, now=moment, end_of_day=True) if until else None
    chosen = []
    for record in records:
        details = record.get("details")
        if environment and not _mentions(details, "environment", environment):
            continue
        if service and not (
            _mentions(details, "service", service) or _mentions(details, "services", service)
        ):
            continue
        if actor and record.get("actor") != actor:
            continue
        if low is not None or high is not None:
            when = _recorded_at(record)
            if low is not None and (when is None or when < low):
                continue
            if high is not None and (when is None or when > high):
                continue
        chosen.append(record)
    return sorted(chosen, key=lambda r: int(r.get("seq", 0)), reverse=True)


def _recorded_at(record: dict[str, Any]) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(record.get("time", "")))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def details_text(details: Any, *, shown: int = 3) -> str:
    """An audit record's details as a reader scans them: `key: value` pairs, what is unset left
    out, a mapping of many (a run's services and their versions) as its first few and how many
    more (`--json` has them all)."""
    if not isinstance(details, dict):
        return "" if details is None else str(details)
    parts = []
    for key, value in details.items():
        if value is None or value in ("", [], {}):
            continue
        if isinstance(value, dict):
            pairs = [f"{k} {v}" if v not in (None, "") else str(k) for k, v in value.items()]
            more = len(pairs) - shown
            text = ", ".join(pairs[:shown]) + (f" and {more} more" if more > 0 else "")
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value)
        else:
            text = str(value)
        parts.append(f"{key}: {text}")
    return "; ".join(parts)
