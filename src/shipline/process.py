"""Run a command and stream its output, line by line, to a log."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from shipline.errors import CheckFailed, ShiplineError, TechnicalError


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


# What a tool prints when the machine or the network broke, not the work it was given.
_BROKEN = re.compile(
    r"connection refused|connection reset|no such host|name resolution|network is unreachable"
    r"|i/o timeout|timed out|tls handshake|x509:|50[234] |service unavailable|bad gateway"
    r"|no space left on device|too many open files|cannot allocate memory|out of memory"
    r"|permission denied while trying to connect",
    re.IGNORECASE,
)


class ToolBroke(TechnicalError):
    """A tool stopped for a technical reason (network, registry, disk, a signal): the step
    errors and may be retried."""


def classify_exit(code: int, lines: Sequence[str], what: str) -> ShiplineError:
    """The error a tool's non-zero exit stands for: a rule's "no" (the build or test itself
    failed: `RuleError`) or something that broke (`ToolBroke`). Exit codes 126/127 (cannot run),
    death by a signal and output naming a network, registry or resource failure are technical."""
    tail = [line for line in lines[-20:] if line.strip()]
    last = tail[-1] if tail else ""
    message = f"{what} (exit {code}): {last}"[:500]
    if code in (126, 127) or code < 0 or code >= 128:
        return ToolBroke(message, hint="the tool could not run or was killed; retrying may help")
    if any(_BROKEN.search(line) for line in tail):
        return ToolBroke(message, hint="a network, registry or resource problem; retrying may help")
    return CheckFailed(message)


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` for the block (waiting for other holders): what a
    read-modify-write of a shared file takes so that concurrent writers lose nothing."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def hold_lock(path: Path, *, wait_seconds: float = 0.0) -> tuple[int | None, str]:
    """Take an exclusive `flock` on `path` for this process's life (the kernel frees it when the
    process dies, `kill -9` included) and write our pid in it. Returns (the open descriptor, "")
    or, when another process holds it after `wait_seconds`, (None, the holder's pid)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    end = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < end:
                time.sleep(0.05)
                continue
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            return None, holder
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd, ""
