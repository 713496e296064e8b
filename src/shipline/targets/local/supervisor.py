"""Replicas as processes: start, health-check, stop, and restart with backoff when they crash.

One Supervisor per worker process (see docs/adr/0004). Each replica's output goes to its own log
file; environment variables (secrets included) are handed to the process, never written to disk.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from shipline.domain.retry import backoff_delay
from shipline.errors import TargetError

BACKOFF_START = 0.5
BACKOFF_MAX = 10.0
CRASH_LOOP_RESTARTS = 3


def http_status(port: int, path: str, timeout: float) -> int:
    """The status of `GET http://127.0.0.1:PORT/PATH` (a plain HTTP/1.1 client: a few times
    lighter than urllib's, and a rollout probes often); OSError or HTTPException when nothing
    or something unreadable answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return int(response.status)
    finally:
        conn.close()


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10_000  # below: the well-known and registered ports services are configured on


def listen_ports(ephemeral: tuple[int, int] | None) -> tuple[int, int] | None:
    """Where to pick ports for listeners: the widest span above LOWEST_PORT outside the kernel's
    range for the local ports of outgoing connections (`ephemeral`), when it holds a thousand
    ports; else None (the kernel picks)."""
    if ephemeral is None:
        return None
    low, high = ephemeral
    spans = [(LOWEST_PORT, low - 1), (max(high + 1, LOWEST_PORT), 65_535)]
    start, end = max(spans, key=lambda span: span[1] - span[0])
    return (start, end) if end - start >= 1000 else None


def _ephemeral() -> tuple[int, int] | None:
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


_SPAN = listen_ports(_ephemeral())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now. It is taken from outside the range
    the kernel gives outgoing connections their local ports from, where there is room: a port
    picked there could be taken by a probe's or a proxied request's connection between this
    pick and the replica's own bind, and the replica would not start."""
    if _SPAN is not None:
        for _ in range(100):
            port = random.randint(*_SPAN)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortBook:
    """The ports a target hands to the processes and gateways it starts. The kernel gives a
    port that no socket holds; a replica started a moment ago (or readied for the next
    rollout) holds none yet, so the kernel can give its port again, to the next replica or to a
    gateway, and one of the two then never listens: it crash-loops. The book never hands out
    a port it handed out in the last `hold` seconds (longer than any start-up is waited for)."""

    def __init__(self, hold: float = 900.0, find: Callable[[], int] = free_port) -> None:
        self._hold = hold
        self._find = find
        self._given: dict[int, float] = {}  # port -> when it was handed out (monotonic)
        self._lock = threading.Lock()

    def take(self) -> int:
        """A free port, not handed out by this book within `hold` seconds."""
        with self._lock:
            now = time.monotonic()
            for port in [p for p, at in self._given.items() if now - at > self._hold]:
                del self._given[port]
            for _ in range(1000):
                port = self._find()
                if port not in self._given:
                    self._given[port] = now
                    return port
            raise TargetError("no free TCP port on 127.0.0.1", hint="too many services here?")


AUTOGROUP_ON = Path("/proc/sys/kernel/sched_autogroup_enabled")
YIELD_NICE = 10  # the daemon's group while a replica starts: about a tenth of a service's share


class Yielding:
    """While a replica starts, the process that started it yields the CPU to it. On Linux with
    autogroup scheduling, the processes of a session share the CPU as one group: a replica is
    started in a session, and so a group, of its own (at normal priority), and the local daemon
    leads one of its own. While a replica starts, the daemon's group is set to a lower
    priority; once none is starting, back to normal (a gateway's traffic is the daemon's too).
    On two cores, a starting service otherwise shares its core with the daemon's and the
    worker's work in between (the service before's verification, the next one's preparation).

    Only a process that leads its own session does this (it would lower the priority of every
    process of the session it is in: a terminal's, a test run's); elsewhere, and without
    autogroup scheduling, nothing happens. Raising a group's nice value and setting it back to
    0 needs no privilege."""

    def __init__(self, enabled: bool) -> None:
        self._fd: int | None = None
        self._starting = 0
        self._lock = threading.Lock()
        if not enabled or os.getsid(0) != os.getpid():
            return
        with contextlib.suppress(OSError):
            if AUTOGROUP_ON.read_text().strip() == "1":
                self._fd = os.open("/proc/self/autogroup", os.O_WRONLY | os.O_CLOEXEC)

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        """Around the wait for a new replica's first healthy answer."""
        self._count(1)
        try:
            yield
        finally:
            self._count(-1)

    def _count(self, change: int) -> None:
        if self._fd is None:
            return
        with self._lock:
            was = self._starting
            self._starting += change
            if (was == 0) != (self._starting == 0):
                with contextlib.suppress(OSError):
                    os.write(self._fd, str(YIELD_NICE if self._starting else 0).encode())

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._fd, b"0")
                os.close(self._fd)
            self._fd = None


@dataclass
class Replica:
    """One process of one version of a service."""

    service: str
    version: str
    port: int
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    health_path: str
    cwd: str | None = None  # a service's own command runs in its folder
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    restart_times: list[float] = field(default_factory=list)
    next_start: float = 0.0
    wanted: bool = True
    last_healthy: bool | None = None  # the last probe's answer
    started: float = 0.0  # when its process was last started (monotonic seconds)
    _log: BinaryIO | None = field(default=None, repr=False)  # opened ahead by `prepare`

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def crash_looping(self) -> bool:
        recent = [t for t in self.restart_times if t > time.monotonic() - 60]
        return len(recent) >= CRASH_LOOP_RESTARTS

    def prepare(self) -> None:
        """Make its log folder and open its log file now, so that `start` only starts it: a
        new folder and file are two of the file system's slower calls (about 0.1 ms each here,
        several times that on a busy machine)."""
        if self._log is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed by `start`, `discard`)

    def discard(self) -> None:
        """A prepared replica that will not start: its log file closed and removed."""
        if self._log is not None:
            self._log.close()
            self._log = None
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def start(self) -> None:
        self.prepare()
        log, self._log = self._log, None
        assert log is not None
        with log:
            self.started = time.monotonic()
            try:
                self.process = subprocess.Popen(
                    self.argv,
                    env=self.env,
                    cwd=self.cwd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:  # no such program, or folder; not executable
                self.process = None
                where = f" in {self.cwd}" if self.cwd else ""
                problem = f"cannot start {self.argv[0]!r}{where}: {exc.strerror or exc}"
                log.write(f"shipline: {problem}\n".encode())
                raise TargetError(
                    f"{self.service} {self.version}: {problem}",
                    hint="check the service's `start` command and folder in shipline.yaml",
                ) from None

    def healthy(self, timeout: float = 1.0) -> bool:
        """Probe the health path now (the answer is kept as `last_healthy`)."""
        self.last_healthy = self._probe(timeout)
        return self.last_healthy

    def _probe(self, timeout: float) -> bool:
        if not self.running:
            return False
        try:
            return 200 <= http_status(self.port, self.health_path, timeout) < 300
        except (OSError, http.client.HTTPException):
            return False

    def known_healthy(self) -> bool:
        """The last probe's answer while the process runs (probing when there was none)."""
        if self.last_healthy is None or not self.running:
            return self.healthy(timeout=0.5)
        return self.last_healthy

    def stop(self, grace: float = 5.0) -> None:
        self.wanted = False
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=grace)
        except ProcessLookupError:
            pass


class Supervisor:
    """Keeps wanted replicas running: a crashed one is started again after a growing pause."""

    def __init__(self, interval: float = 0.5) -> None:
        self._replicas: list[Replica] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._loop, name="shipline-supervisor", daemon=True)
        self._thread.start()

    def add(self, replica: Replica) -> None:
        """Start `replica` and watch it."""
        replica.start()
        with self._lock:
            self._replicas.append(replica)

    def remove(self, replica: Replica, *, stop: bool = True) -> None:
        """Stop watching `replica` and stop it (`stop=False`: the caller stops it later)."""
        with self._lock:  # after this, the watch never starts it again
            replica.wanted = False
            if replica in self._replicas:
                self._replicas.remove(replica)
        if stop:
            replica.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            now = time.monotonic()
            with self._lock:
                replicas = list(self._replicas)
            for replica in replicas:
                if not replica.wanted or replica.running:
                    continue
                if replica.next_start == 0.0:
                    pause = backoff_delay(replica.restarts + 1, BACKOFF_START, cap=BACKOFF_MAX)
                    replica.next_start = now + pause
                elif now >= replica.next_start:
                    replica.restarts += 1
                    replica.restart_times.append(now)
                    replica.next_start = 0.0
                    with self._lock, contextlib.suppress(TargetError):  # logged; tried again
                        # removed or shut down since the look: a start now would be orphaned
                        if replica in self._replicas and replica.wanted:
                            replica.start()

    def shutdown(self) -> None:
        """Stop every replica and the watch."""
        self._stop.set()
        with self._lock:  # a restart under way ends first; none starts after this
            replicas, self._replicas = list(self._replicas), []
        for replica in replicas:
            replica.stop()
