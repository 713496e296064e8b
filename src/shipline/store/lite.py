"""Reads of the default (SQLite) state store through the standard library's sqlite3.

`runs list` and `status` only read the run table; importing SQLAlchemy costs such a command
more than everything else it does. This reader answers the same questions with the same
records as `SqlStateStore` (a contract test holds the two to it), read-only, and only from a
store whose schema is at the newest revision: anything else (no file yet, an older schema that
needs migrating, PostgreSQL) is for `SqlStateStore`.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from shipline.errors import StoreError
from shipline.store.records import HEAD, RunRecord, aware, mention_pattern

# every column but the specification, which no list of runs needs (`list_runs`)
_RUN_COLUMNS = (
    "id", "workflow_id", "pipeline", "environment", "services", "params",
    "requested_by", "requested_at", "phase", "reason", "started_at", "finished_at",
    "cancel_requested", "cancel_reason", "emergency_reason", "parked", "wake_at",
    "wake_pending", "segment", "queue",
)  # fmt: skip
_JSON = {"services", "params"}
_TIMES = {"requested_at", "started_at", "finished_at", "wake_at"}
_FLAGS = {"cancel_requested", "wake_pending"}


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///PATH` state store URL, else None."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    name = url[len(prefix) :]
    return Path(name) if name and name != ":memory:" else None


def _time(value: Any) -> datetime | None:
    return aware(datetime.fromisoformat(value)) if value is not None else None


def _record(row: tuple[Any, ...]) -> RunRecord:
    data: dict[str, Any] = dict(zip(_RUN_COLUMNS, row, strict=True))
    for name in _JSON:
        data[name] = json.loads(data[name])
    for name in _TIMES:
        data[name] = _time(data[name])
    for name in _FLAGS:
        data[name] = bool(data[name])
    return RunRecord(**data, spec={})


class SqliteRunReader:
    """The run table of a SQLite state store, read-only."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def open(cls, path: Path) -> SqliteRunReader | None:
        """A reader of the store at `path`, or None when there is none yet or its schema is
        not at the newest revision (the caller opens `SqlStateStore`, which migrates)."""
        if not path.is_file():
            return None
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        except sqlite3.Error:
            return None
        try:
            found = {row[0] for row in db.execute("SELECT version_num FROM alembic_version")}
        except sqlite3.Error:
            db.close()
            return None
        if found != {HEAD}:
            db.close()
            return None
        return cls(db)

    def list_runs(self, *, limit: int = 50, environment: str | None = None) -> list[RunRecord]:
        """Newest runs first, their specifications left unread (as `SqlStateStore.list_runs`)."""
        found: list[RunRecord] = []
        below: int | None = None  # the page after the one read, by id
        try:
            while True:
                query = f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE 1"
                args: list[Any] = []
                if environment:  # its own, or one a promotion moves through
                    query += " AND (environment = ? OR params LIKE ? ESCAPE '\\')"
                    args += [environment, mention_pattern(environment)]
                if below is not None:
                    query += " AND id < ?"
                    args.append(below)
                page = [
                    _record(row)
                    for row in self._db.execute(f"{query} ORDER BY id DESC LIMIT ?", [*args, limit])
                ]
                found += [r for r in page if not environment or r.touches(environment)]
                if len(found) >= limit or len(page) < limit:
                    return found[:limit]
                below = page[-1].id
        except sqlite3.Error as exc:
            raise StoreError(f"state store read failed: {type(exc).__name__}") from exc

    def close(self) -> None:
        """Release the connection."""
        self._db.close()
