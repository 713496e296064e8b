"""Reads the list commands make of the run table: `runs list` and `status` on the default
SQLite store go through the standard library (no SQLAlchemy to import, a third of such a
command); PostgreSQL, or a store not yet at the newest schema, through the state store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shipline.engine.wiring import RunRecord


class RunReader(Protocol):
    """What reading the run table needs: the newest runs, and letting go."""

    def list_runs(self, *, limit: int = 50, environment: str | None = None) -> list[RunRecord]:
        """Newest runs first."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


def run_reader(database_url: str) -> RunReader:
    """A reader of the run table of the store at `database_url`."""
    from shipline.engine.wiring import SqliteRunReader, sqlite_path

    path = sqlite_path(database_url)
    reader = SqliteRunReader.open(path) if path is not None else None
    if reader is not None:
        return reader
    from shipline.engine.wiring import SqlStateStore

    return SqlStateStore.connect(database_url)


def recent_runs(
    database_url: str, *, limit: int, environment: str | None = None
) -> list[RunRecord]:
    """The newest `limit` runs (of `environment`), newest first."""
    reader = run_reader(database_url)
    try:
        return reader.list_runs(limit=limit, environment=environment)
    finally:
        reader.close()


def run_summary(record: RunRecord) -> dict[str, Any]:
    """A run as the CLI's --json and the server's API show it."""
    return {
        "id": record.id,
        "pipeline": record.pipeline,
        "environment": record.environment,
        "services": record.services,
        "phase": record.phase,
        "reason": record.reason,
        "requestedBy": record.requested_by,
        "requestedAt": record.requested_at.isoformat(),
        "startedAt": record.started_at.isoformat() if record.started_at else None,
        "finishedAt": record.finished_at.isoformat() if record.finished_at else None,
        "cancelReason": record.cancel_reason,
        "emergencyReason": record.emergency_reason,
    }
