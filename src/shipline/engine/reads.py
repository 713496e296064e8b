"""Reads the list commands make of the run table: `runs list` and `status` on the default
SQLite store go through the standard library (no SQLAlchemy to import, a third of such a
command); PostgreSQL, or a store not yet at the newest schema, through the state store. And how
a run's records are shown: its summary, a stage's or step's times, a duration in words."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from shipline.domain.models import Config
    from shipline.engine.wiring import RunRecord

Row = TypeVar("Row")


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


def by_environment(
    name: str, listed: Callable[[str], Sequence[Row]], config: Callable[[], Config]
) -> tuple[str, Sequence[Row]]:
    """What `listed` gives for environment `name`, and the name it was listed under. Runs and
    audit records keep an environment's name, so an alias is read as the name it stands for; a
    name the configuration does not know lists what was recorded under it (a removed
    environment's history), and is refused (NotFoundError, with the known names) when nothing
    was: a typo. The configuration (`config`) is read only when the first answer is empty."""
    from shipline.engine.pipelines import find_environment

    found = listed(name)
    if found:
        return name, found
    named = find_environment(config(), name).name
    return (named, listed(named)) if named != name else (name, found)


def run_summary(record: RunRecord) -> dict[str, Any]:
    """A run as the CLI's --json and the server's API show it."""
    return {
        "id": record.id,
        "pipeline": record.pipeline,
        "environment": record.environment,
        "environments": record.environments,  # a promotion's, in ladder order
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


def where(run: dict[str, Any]) -> str:
    """The environments a run (as `run_summary` shows it) acts on, as a table shows them:
    `qa, staging` for a promotion through both ("" for none)."""
    return ", ".join(
        run.get("environments") or ([run["environment"]] if run.get("environment") else [])
    )


def times(row: dict[str, Any]) -> dict[str, Any]:
    """When a stage or step (a row of the state store) started and ended, and how long it took
    in seconds (None until it has)."""
    began, ended = row.get("started_at"), row.get("finished_at")
    return {
        "startedAt": as_utc(began).isoformat() if began else None,
        "finishedAt": as_utc(ended).isoformat() if ended else None,
        "seconds": round((as_utc(ended) - as_utc(began)).total_seconds(), 3)
        if began and ended
        else None,
    }


def as_utc(moment: datetime) -> datetime:
    """`moment` with UTC as its zone when it has none (SQLite keeps none)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def took(seconds: float | None) -> str:
    """A duration as people read it: 85 ms, 2.9 s, 4m05s, 1h20m ("" for none yet)."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
