"""An append-only audit log; each record is hash-chained to the one before it.

A changed, inserted or removed record breaks the chain, and `verify` says where.
Records name actors, actions and objects; never secret values.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def _digest(previous: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((previous + canonical).encode()).hexdigest()


@dataclass(frozen=True)
class AuditProblem:
    """Where the chain breaks."""

    line: int
    message: str


class AuditLog:
    """JSON lines at `path`; appends hold an exclusive lock so writers never interleave."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, actor: str, action: str, **details: Any) -> dict[str, Any]:
        """Add a record and return it."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            lines = handle.read().splitlines()
            previous, seq = GENESIS, 0
            if lines:
                last = json.loads(lines[-1])
                previous, seq = last["hash"], last["seq"]
            body = {
                "seq": seq + 1,
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "actor": actor,
                "action": action,
                "details": details,
                "prev": previous,
            }
            record = {**body, "hash": _digest(previous, body)}
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            self._write_head(record)
        return record

    @property
    def head_path(self) -> Path:
        """Where the newest record's number and hash are kept, so a cut tail shows."""
        return self.path.with_name(self.path.name + ".head")

    def _write_head(self, record: dict[str, Any]) -> None:
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        tmp.write_text(json.dumps({"seq": record["seq"], "hash": record["hash"]}))
        os.replace(tmp, self.head_path)

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def verify(self) -> list[AuditProblem]:
        """Problems in the chain; empty when every record is intact and in place."""
        problems: list[AuditProblem] = []
        previous, expected_seq = GENESIS, 1
        if not self.path.exists():
            return problems
        for number, line in enumerate(self.path.read_text("utf-8").splitlines(), start=1):
            try:
                record = json.loads(line)
                body = {k: v for k, v in record.items() if k != "hash"}
                claimed = record["hash"]
            except (ValueError, KeyError, AttributeError):
                problems.append(AuditProblem(number, "not a valid record"))
                continue
            if body.get("seq") != expected_seq:
                problems.append(
                    AuditProblem(number, f"sequence {body.get('seq')}, expected {expected_seq}")
                )
            if body.get("prev") != previous:
                problems.append(AuditProblem(number, "does not follow the previous record"))
            if _digest(str(body.get("prev")), body) != claimed:
                problems.append(AuditProblem(number, "record was changed"))
            previous = claimed
            expected_seq = int(body.get("seq", expected_seq)) + 1
        if self.head_path.exists():
            head = json.loads(self.head_path.read_text())
            if head.get("hash") != previous:
                last = expected_seq - 1
                problems.append(
                    AuditProblem(
                        last,
                        f"the log ends at record {last}, but record "
                        f"{head.get('seq')} was written: records were removed",
                    )
                )
        return problems
