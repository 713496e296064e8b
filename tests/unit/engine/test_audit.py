"""The audit log's hash chain detects changed, removed and reordered records."""

from __future__ import annotations

import json
from pathlib import Path

from shipline.engine.audit import AuditLog


def _log(tmp_path: Path, count: int = 4) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(count):
        log.append("ann", "secret.set", name=f"S{i}")
    return log


def test_intact_chain(tmp_path: Path) -> None:
    log = _log(tmp_path)
    assert log.verify() == []
    assert [r["seq"] for r in log.records()] == [1, 2, 3, 4]


def test_changed_record_is_detected(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = log.path.read_text().splitlines()
    record = json.loads(lines[1])
    record["actor"] = "mallory"
    lines[1] = json.dumps(record, sort_keys=True)
    log.path.write_text("\n".join(lines) + "\n")
    assert [p.line for p in log.verify()] == [2]


def test_removed_record_is_detected(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = log.path.read_text().splitlines()
    del lines[2]
    log.path.write_text("\n".join(lines) + "\n")
    problems = log.verify()
    assert problems and problems[0].line == 3


def test_removed_last_record_is_detected_through_the_head(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = log.path.read_text().splitlines()[:-1]
    log.path.write_text("\n".join(lines) + "\n")
    problems = log.verify()
    assert [p.line for p in problems] == [3]
    assert "record 4 was written" in problems[0].message


def test_garbage_line(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    with log.path.open("a") as handle:
        handle.write("not json\n")
    assert [p.message for p in log.verify()] == ["not a valid record"]
