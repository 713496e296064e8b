"""The audit trail's hash chain: each record's hash covers its body and the previous hash.

A changed, inserted or removed record breaks the chain; a head (the newest record's number and
hash, kept apart from the records) also shows a removed tail. Pure functions; the store keeps the
records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


def digest(previous: str, body: dict[str, Any]) -> str:
    """The hash of `body` chained to `previous`."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((previous + canonical).encode()).hexdigest()


def chained(
    previous: str, seq: int, time: str, actor: str, action: str, details: dict[str, Any]
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
    return {**body, "hash": digest(previous, body)}


@dataclass(frozen=True)
class AuditProblem:
    """Where the chain breaks (`line`: the position of the record, from 1)."""

    line: int
    message: str


def verify_chain(
    records: Sequence[dict[str, Any] | None], head: tuple[int, str] | None
) -> list[AuditProblem]:
    """Problems in `records` (oldest first; None for one that cannot be read) given the `head`
    (seq and hash of the newest record written); empty when every record is intact and in place.
    """
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
        if digest(str(body.get("prev")), body) != record["hash"]:
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
    return problems
