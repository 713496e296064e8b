"""Run a command and stream its output, line by line, to a log."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path


def stream(
    argv: list[str],
    log: Callable[[str], None],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[int, list[str]]:
    """Run `argv` with stderr folded into stdout; return its exit code and output lines."""
    lines: list[str] = []
    with subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\n")
            lines.append(line)
            log(line)
        return process.wait(), lines
