"""The front door of a state folder's workers: a local stream socket on which a command of the
same user hands a submission (`deploy --detach`) to a worker that already has the project, its
store and the engine loaded, instead of loading them itself. The worker checks it with the same
engine function the command would call and answers with the run it recorded, or the error.

A Linux abstract Unix socket named after the state folder (no file, no path limit). Only a peer
of the worker's own user is served (`SO_PEERCRED`): anyone else's request is not acted on, and
they are told to do the work themselves. A command that
finds no door, or a door that says it serves another project, does the work itself: the door
is a shortcut, never the only way. One worker of a folder holds the door at a time; the others
try again now and then, so the door outlives the worker that held it.

Standard library only: the command's side must cost nothing to import.
"""

from __future__ import annotations

import _socket  # the command's side: `socket` costs ~3 ms to import (its enums), `_socket` nothing
import contextlib
import json
import os
import struct
from pathlib import Path

from shipline.doorbell import folder_key

TYPE_CHECKING = False  # typing is not imported at run time (the quick path loads this)
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from typing import Any

TIMEOUT_SECONDS = 10.0  # a worker busy that long: the command waits no more, and says so
RETRY_BIND_SECONDS = 2.0
_LIMIT = 1 << 20  # a request or an answer larger than this is refused


class DoorError(Exception):
    """The door was reached but gave no answer (the command must not submit again: it may have
    been recorded)."""


def address(state_dir: Path) -> bytes:
    """The door's abstract socket name for a state folder."""
    return f"\0shipline-door-{folder_key(state_dir)}".encode()


def knock(state_dir: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """Hand `request` to a worker of `state_dir`; its answer, or None where no worker listens
    (the caller does the work itself)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    sock.settimeout(TIMEOUT_SECONDS)
    try:
        try:
            sock.connect(address(state_dir))
        except OSError:
            return None  # nobody at the door
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            answer = _read_line(sock)
        except OSError as exc:
            raise DoorError(f"the worker did not answer: {exc}") from exc
        if answer is None:
            raise DoorError("the worker closed the door without an answer")
        found: dict[str, Any] = json.loads(answer)
        return found
    finally:
        sock.close()


def _read_line(sock: _socket.socket) -> bytes | None:
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > _LIMIT:
            raise OSError("message too large")
    return data.split(b"\n", 1)[0]


def _peer_uid(conn: _socket.socket) -> int:
    pid_uid_gid = conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", pid_uid_gid)[1])


def keep(
    state_dir: Path,
    stop: threading.Event,
    answer: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """Until `stop`: hold the door of `state_dir` (or wait for it to be free) and answer each
    request of this user with `answer` (which never raises), one at a time."""
    import socket  # the worker's side: `accept`

    while not stop.is_set():
        door = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            door.bind(address(state_dir))
        except OSError:  # another worker of the folder holds it
            door.close()
            stop.wait(RETRY_BIND_SECONDS)
            continue
        with contextlib.closing(door):
            door.listen(16)
            door.settimeout(0.5)
            while not stop.is_set():
                try:
                    conn, _ = door.accept()
                except TimeoutError:
                    continue
                with contextlib.closing(conn):
                    _serve_one(conn, answer)


def _serve_one(conn: _socket.socket, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    conn.settimeout(TIMEOUT_SECONDS)
    try:
        line = _read_line(conn)
        if line is None:
            return
        if _peer_uid(conn) != os.getuid():  # another user: not acted on, told to do it alone
            conn.sendall(json.dumps({"fallback": "another user"}).encode() + b"\n")
            return
        try:
            request = json.loads(line)
        except ValueError:
            reply: dict[str, Any] = {"fallback": "unreadable request"}
        else:
            reply = answer(request) if isinstance(request, dict) else {"fallback": "not a request"}
        conn.sendall(json.dumps(reply).encode() + b"\n")
    except OSError:
        return  # the command went away: what was recorded stays, as if it had detached
