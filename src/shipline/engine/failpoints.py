"""Fail points: named places where a test has the worker killed on purpose.

`SHIPLINE_FAILPOINTS=step-recorded,deploy-applied` makes a worker SIGKILL itself when it reaches
one of them, so a crash test lands exactly inside a window (after a step's outcome is recorded
and before the engine checkpoints it; after a target applied a change and before the step
recorded it) instead of hoping a random kill does. Each point fires once per key: the keys that
fired are appended to SHIPLINE_FAILPOINTS_LOG before the kill, so the restarted worker goes on.
Unset, a fail point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "SHIPLINE_FAILPOINTS"
LOG_ENV = "SHIPLINE_FAILPOINTS_LOG"
# Steps of a stage may run in threads: the first to reach a fail point kills the process, and
# another one reaching one meanwhile waits here (so it neither logs a kill nor acts).
_KILLING = threading.Lock()


def failpoint(name: str, key: str) -> None:
    """Kill this process here, as `kill -9` would, when SHIPLINE_FAILPOINTS names `name` and
    it has not fired for `key` yet."""
    armed = os.environ.get(ENV)
    if not armed or name not in armed.split(","):
        return
    entry = f"{name} {key}"
    with _KILLING:  # held until the process dies: another thread's fail point waits here
        log = os.environ.get(LOG_ENV)
        if log:
            try:
                with open(log, encoding="utf-8") as handle:
                    if entry in handle.read().splitlines():
                        return
            except FileNotFoundError:
                pass
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(entry + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
