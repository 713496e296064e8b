"""What the durable workflows reach at run time: store, actions, notifiers, clock, audit.

DBOS keeps one engine per process, so the runtime is one per process too; `shipline worker`
(or a test) installs it before launching DBOS.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipline.domain.events import EventKind
from shipline.domain.masking import Masker
from shipline.domain.ports import DeployTarget, Notifier
from shipline.engine.actions import Action
from shipline.engine.logwriter import LogWriter
from shipline.engine.wiring import SqlAuditLog, SqlStateStore
from shipline.errors import ShiplineError

INBOX = "inbox"
RUN_QUEUE = "shipline-runs"  # any worker's
WORKFLOW_NAME = "shipline.run"
APP_VERSION = "shipline-engine-1"

log = logging.getLogger("shipline.engine")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """Per-process engine state used by the workflows."""

    store: SqlStateStore
    audit: SqlAuditLog
    masker: Masker = field(default_factory=Masker)
    actions: dict[str, Action] = field(default_factory=dict)
    notifiers: Callable[[EventKind], Sequence[Notifier]] = lambda kind: ()
    clock: Callable[[], datetime] = _now
    # A run queued for a lock is woken by a message when the lock is released; this is only
    # the fallback look, should a message ever be missed.
    lock_poll_seconds: float = 30.0
    wait_chunk_seconds: float = 60.0
    notify_backoff_seconds: float = 0.5
    workspace: Any = None  # the project, when the worker runs for one (variables, secrets)
    # Queues a parked run's continuation (workflow id, run id); set when the engine launches.
    enqueue: Callable[[str, int], None] | None = None
    targets: dict[tuple[str, str, tuple[tuple[str, str], ...]], DeployTarget] = field(
        default_factory=dict
    )
    _targets_lock: threading.Lock = field(default_factory=threading.Lock)
    _log_writer: LogWriter | None = None

    def log_writer(self) -> LogWriter:
        """The writer of steps' log lines (one per process, started on first use)."""
        with self._targets_lock:
            if self._log_writer is None:
                self._log_writer = LogWriter(self.store)
            return self._log_writer

    def target(
        self, kind: str, state_dir: Path, settings: dict[str, str | None] | None = None
    ) -> DeployTarget:
        """The target of `kind` for `state_dir`, built once per process (a local target's
        replicas live as long as the worker that built it)."""
        from shipline.engine.wiring import build_target

        chosen = dict(settings or {})
        key = (kind, str(state_dir), tuple(sorted((k, v or "") for k, v in chosen.items())))
        with self._targets_lock:
            found = self.targets.get(key)
            if found is None:
                found = self.targets[key] = build_target(kind, state_dir, chosen)
            return found


_RUNTIME: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    """Make `runtime` the one the workflows of this process use."""
    global _RUNTIME  # noqa: PLW0603 - one engine per process, as DBOS
    _RUNTIME = runtime


def current() -> Runtime:
    """The installed runtime."""
    if _RUNTIME is None:
        raise ShiplineError("the engine runtime is not installed in this process")
    return _RUNTIME


def local_queue(state_dir: Path) -> str:
    """The durable queue of the `local` targets of this machine and state folder: runs that
    act on them are pinned to it, and only the worker serving that folder here listens to it."""
    import hashlib
    import socket

    key = f"{socket.gethostname()}:{state_dir.resolve()}"
    return f"shipline-local-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def dbos_url(url: str) -> str:
    """The URL DBOS wants for the same database (it picks its own PostgreSQL driver)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def system_database_url(state_url: str, state_dir: Path) -> str:
    """DBOS's system database: the same PostgreSQL database, or its own SQLite file."""
    if state_url.startswith("sqlite"):
        return f"sqlite:///{state_dir / 'dbos.sqlite'}"
    return dbos_url(state_url)
