"""Steps' log lines, written to the state store by one thread of the worker in batches.

A step that logs does not wait for the store: its lines are queued and a writer thread appends
whatever has queued in one transaction, while the step goes on (a deploy waiting for its
service, a health check). Followers (`runs logs --follow`, the web page) see a line as soon as
that transaction commits. Before a step's outcome is recorded the engine waits for the step's
lines (`flush`), so a recorded step has all its lines: a worker killed before that loses only
lines of a step that has no outcome yet, and that step runs again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

log = logging.getLogger("shipline.engine")

Line = tuple[int, str, str, datetime, str]


class LogStore(Protocol):
    def add_logs(self, lines: list[Line]) -> None: ...


class LogWriter:
    """Queue of log lines and the thread that writes them (started on the first line)."""

    def __init__(self, store: LogStore, retry_seconds: float = 0.5) -> None:
        self._store = store
        self._retry_seconds = retry_seconds
        self._pending: list[Line] = []
        self._queued = 0  # lines ever queued
        self._written = 0  # lines ever written, in queue order
        self._failing = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def write(self, run_id: int, stage: str, step: str, line: str) -> None:
        """Queue one line (stamped now)."""
        with self._changed:
            self._pending.append((run_id, stage, step, datetime.now(UTC), line))
            self._queued += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="shipline-log-writer", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every line queued so far is in the store; False if the store kept
        failing for `timeout` seconds (the lines stay queued and are written when it is back)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            goal = self._queued
            while self._written < goal:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._pending:
                    self._changed.wait()
                batch, self._pending = self._pending, []
            try:
                self._store.add_logs(batch)
            except Exception as exc:  # the store is down: keep the lines, try again
                with self._changed:
                    self._pending[:0] = batch
                    if not self._failing:
                        log.warning("writing log lines failed (%s); retrying", exc)
                    self._failing = True
                time.sleep(self._retry_seconds)
                continue
            with self._changed:
                self._written += len(batch)
                self._failing = False
                self._changed.notify_all()


def step_logger(
    writer: LogWriter, mask: Callable[[str], str], run_id: int, stage: str, step: str
) -> Callable[[str], None]:
    """A step's `log`: each line masked, then queued."""

    def write(line: str) -> None:
        writer.write(run_id, stage, step, mask(line))

    return write
