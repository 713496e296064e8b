"""A doorbell for the workers of one state folder: the CLI rings after it asks something of
the engine (in the state store's outbox), so a worker acts at once instead of at its next
look. Linux abstract Unix datagram sockets: no file to clean up, no path length limit; a
worker that is not listening simply is not woken (it looks on its own every pass anyway).

Workers on other machines (PostgreSQL) are not reached by this bell: they are woken by the
store's own notification (LISTEN/NOTIFY), or look at their next pass.
"""

from __future__ import annotations

import hashlib
import select
import socket
from pathlib import Path

LOCK_PREFIX = "worker-"  # worker-NAME.lock in the state folder: who may be listening


def _address(state_dir: Path, name: str) -> bytes:
    folder = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:24]
    return b"\0shipline/" + folder.encode() + b"/" + name.encode()[:64]


def ring(state_dir: Path) -> int:
    """Wake every worker listening for `state_dir`; how many were rung."""
    try:
        names = [p.name[len(LOCK_PREFIX) : -len(".lock")] for p in state_dir.glob("worker-*.lock")]
    except OSError:
        return 0
    rung = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as bell:
        bell.setblocking(False)
        for name in names:
            try:
                bell.sendto(b"!", _address(state_dir, name))
                rung += 1
            except OSError:  # nobody listens there (a stopped worker), or its queue is full
                continue
    return rung


class Doorbell:
    """What a worker listens on: `wait` returns as soon as it is rung, or after `timeout`."""

    def __init__(self, state_dir: Path, name: str) -> None:
        self._socket: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._socket.bind(_address(state_dir, name))
        except OSError:  # another process of this name listens: look on the timer alone
            self._socket.close()
            self._socket = None
        else:
            self._socket.setblocking(False)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True when rung (every ring so far is taken)."""
        if self._socket is None:
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
