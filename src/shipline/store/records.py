"""What the state store holds, as plain records (no SQLAlchemy: readers that skip it share
them), and the schema revision a store must be at."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration: files are named NNNN_title.py and each one's revision is its NNNN.
HEAD = max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def aware(value: datetime | None) -> datetime | None:
    """`value` with UTC as its zone when it has none (SQLite keeps none)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RunRecord:
    """A run as stored. In a list of runs (`list_runs`) its specification, the largest part of
    its row and needed by none of the lists, is left unread: `spec` is empty there."""

    id: int
    workflow_id: str
    pipeline: str
    environment: str | None
    services: dict[str, str]
    params: dict[str, Any]
    spec: dict[str, Any]
    requested_by: str
    requested_at: datetime
    phase: str
    reason: str | None
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    cancel_reason: str | None
    emergency_reason: str | None
    parked: str | None = None
    wake_at: datetime | None = None
    wake_pending: bool = False
    segment: int = 0
    queue: str | None = None  # None: any worker's queue

    @property
    def current_workflow(self) -> str:
        """The workflow that runs (or last ran) this run: the first segment is the run's own
        workflow, each continuation after a parked wait its own."""
        return workflow_of(self.workflow_id, self.segment)

    @property
    def environments(self) -> list[str]:
        """The environments the run acts on: those a promotion moves through, in order (the
        run's own is the last), or the one it names."""
        moved = self.params.get("environments")
        if moved:
            return [str(e) for e in moved]
        return [self.environment] if self.environment else []

    def touches(self, environment: str) -> bool:
        """Whether the run acts on `environment` (one of `environments`)."""
        return environment in self.environments


def mention_pattern(environment: str) -> str:
    """A LIKE pattern that every run touching `environment` matches, on the text of its
    parameters or on its environment (a few others may match too: `touches` decides)."""
    quoted = json.dumps(environment).replace("\\", "\\\\")
    return "%" + quoted.replace("%", "\\%").replace("_", "\\_") + "%"


def workflow_of(base: str, segment: int) -> str:
    """The workflow id of a run's segment."""
    return base if segment == 0 else f"{base}.{segment}"
