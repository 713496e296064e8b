"""The hash chain as pure functions: what verify_chain reports for each kind of tampering."""

from __future__ import annotations

from typing import Any

from shipline.domain.audit import GENESIS, chained, verify_chain


def _chain(count: int) -> list[dict[str, Any]]:
    records, previous = [], GENESIS
    for seq in range(1, count + 1):
        record = chained(previous, seq, f"t{seq}", "ann", "run.start", {"run": seq})
        records.append(record)
        previous = record["hash"]
    return records


def test_intact() -> None:
    records = _chain(3)
    assert verify_chain(records, (3, records[-1]["hash"])) == []
    assert verify_chain([], None) == []


def test_reordered_records() -> None:
    records = _chain(3)
    records[0], records[1] = records[1], records[0]
    assert {p.line for p in verify_chain(records, (3, records[-1]["hash"]))} == {1, 2, 3}


def test_inserted_record_with_a_valid_looking_hash() -> None:
    records = _chain(3)
    forged = chained(records[0]["hash"], 2, "t9", "mallory", "approval.approve", {})
    tampered = [records[0], forged, *records[1:]]
    assert verify_chain(tampered, (3, records[-1]["hash"]))


def test_unreadable_record_in_the_middle() -> None:
    records: list[dict[str, Any] | None] = [*_chain(3)]
    records[1] = None
    problems = verify_chain(records, (3, records[-1]["hash"]))  # type: ignore[index]
    assert (problems[0].line, problems[0].message) == (2, "not a valid record")


def test_everything_removed_while_the_head_remembers() -> None:
    records = _chain(2)
    problems = verify_chain([], (2, records[-1]["hash"]))
    assert problems and "record 2 was written" in problems[0].message
