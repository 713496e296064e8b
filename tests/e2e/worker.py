"""Drive the installed CLI with a real worker process, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXE = str(Path(sys.executable).parent / "shipline")


@contextmanager
def running_worker(
    project: Path, home: Path, user: str, log: Path, stop_timeout: float = 60
) -> Iterator[dict[str, str]]:
    """An environment for `project` with its state in `home`, and a worker running on it."""
    environ = {
        **os.environ,
        "SHIPLINE_CONFIG": str(project),
        "SHIPLINE_HOME": str(home),
        "SHIPLINE_USER": user,
    }
    environ.pop("SHIPLINE_DATABASE_URL", None)
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [EXE, "worker", "--poll-seconds", "0.1"], env=environ, stdout=out, stderr=out
        )
    try:
        yield environ
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=stop_timeout)


def sh(
    env: dict[str, str], *args: str, timeout: float = 180, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `shipline ARGS` (with `input_text` on stdin); never raises on a non-zero exit."""
    return subprocess.run(
        [EXE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False,
        input=input_text,
    )  # fmt: skip
