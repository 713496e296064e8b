"""A doorbell for the workers of one state folder: the CLI rings after it asks something of
the engine (in the state store's outbox), so a worker acts at once instead of at its next
look. Linux abstract Unix datagram sockets: no file to clean up, no path length limit; a
worker that is not listening simply is not woken (it looks on its own every pass anyway).

Workers on other machines (PostgreSQL) are not reached by this bell: they are woken by the
store's own notification (LISTEN/NOTIFY), or look at their next pass.

The other way round, a command that waits for a run (`deploy`, `promote`, `runs logs --follow`)
listens on a bell of its own, named after the run in `followers/` of the state folder; the
worker rings a run's followers when one of its stages moves or it ends, so the command shows it
at once instead of at its next look.
"""

from __future__ import annotations

import _socket  # not `socket`: the command loads this, and `socket` costs ~3 ms to import
import contextlib
import os
import select
import time
from _blake2 import blake2b  # the interpreter's own: hashlib's OpenSSL costs ~3 ms a command
from pathlib import Path

LOCK_PREFIX = "worker-"  # worker-NAME.lock in the state folder: who may be listening
FOLLOWERS = "followers"  # followers/RUN-PID in the state folder: commands waiting for a run


def folder_key(state_dir: Path) -> str:
    """The name of `state_dir` (resolved) among the machine's abstract sockets."""
    return blake2b(str(state_dir.resolve()).encode(), digest_size=12).hexdigest()


def _address(state_dir: Path, name: str) -> bytes:
    return b"\0shipline/" + folder_key(state_dir).encode() + b"/" + name.encode()[:64]


def ring(state_dir: Path) -> int:
    """Wake every worker listening for `state_dir`; how many were rung."""
    try:
        names = [p.name[len(LOCK_PREFIX) : -len(".lock")] for p in state_dir.glob("worker-*.lock")]
    except OSError:
        return 0
    rung, _ = _send(state_dir, names)  # the silent: a stopped worker
    return rung


def _send(state_dir: Path, names: list[str]) -> tuple[int, list[str]]:
    """Ring each of `names`: how many were rung (a full queue counts: its listener wakes
    anyway), and those nobody listens to."""
    rung, silent = 0, []
    with contextlib.closing(_socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)) as bell:
        bell.setblocking(False)
        for name in names:
            try:
                bell.sendto(b"!", _address(state_dir, name))
                rung += 1
            except BlockingIOError:
                rung += 1
            except OSError:
                silent.append(name)
    return rung, silent


class Doorbell:
    """What a worker listens on: `wait` returns as soon as it is rung, or after `timeout`."""

    def __init__(self, state_dir: Path, name: str) -> None:
        self._socket: _socket.socket | None = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
        try:
            self._socket.bind(_address(state_dir, name))
        except OSError:  # another process of this name listens: look on the timer alone
            self._socket.close()
            self._socket = None
        else:
            self._socket.setblocking(False)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True when rung (every ring so far is taken)."""
        if self._socket is None:  # not listening: the timer alone
            time.sleep(timeout)
            return False
        ready, _, _ = select.select([self._socket], [], [], timeout)
        if not ready:
            return False
        while True:
            try:
                self._socket.recv(16)
            except BlockingIOError:
                return True

    def close(self) -> None:
        """Stop listening."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


ENDS = ".end"  # the name's ending of a follower that waits for the run's end only


def ring_followers(state_dir: Path, run_id: int, *, ended: bool = False) -> int:
    """Wake every command of this machine waiting for run `run_id` (`ended`: the run ended;
    else it moved, and a command that waits for its end only is left alone); how many were
    rung. A follower that is gone (a killed command) has its name removed."""
    try:
        names = [
            p.name
            for p in (state_dir / FOLLOWERS).glob(f"{run_id}-*")
            if ended or not p.name.endswith(ENDS)
        ]
    except OSError:
        return 0
    rung, silent = _send(state_dir, [f"{FOLLOWERS}/{name}" for name in names])
    for gone in silent:
        with contextlib.suppress(OSError):
            (state_dir / gone).unlink()
    return rung


class Follower:
    """A command waiting for run `run_id`: `wait` returns when the worker rang (the run moved;
    `ends_only`: it ended) or after `timeout`, like `time.sleep` but woken early. A command
    that shows only the run's end is not woken at every move, nor asks the worker each time."""

    def __init__(self, state_dir: Path, run_id: int, *, ends_only: bool = False) -> None:
        name = f"{run_id}-{os.getpid()}" + (ENDS if ends_only else "")
        self._bell = Doorbell(state_dir, f"{FOLLOWERS}/{name}")
        self._marker: Path | None = state_dir / FOLLOWERS / name
        try:
            self._marker.parent.mkdir(mode=0o700, exist_ok=True)
            self._marker.touch()
        except OSError:  # a read-only state folder: nobody can find the bell; the timer rings
            self._marker = None

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True when rung."""
        return self._bell.wait(timeout)

    def close(self) -> None:
        """Stop listening, and leave no name behind."""
        self._bell.close()
        if self._marker is not None:
            with contextlib.suppress(OSError):
                self._marker.unlink()
            self._marker = None

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
