"""The local target: each (environment, service) is a gateway port in front of replica processes.

Deploys are rolling (a new replica up and healthy before an old one goes). For a canary the
engine drives the plan; this target only starts the canary replica beside the stable ones, sets
the gateway's weights (and sends probe requests while a canary runs), and promotes or removes it.
Every apply records a revision, as a Kubernetes Deployment does; rollback re-applies one.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipline.domain.deploy import DeployPlan, DeploySpec, Revision, ServiceState, plan_change
from shipline.domain.health import HealthBounds, Observation
from shipline.domain.ports import LogSink, MetricSource, SecretValues, TargetContext
from shipline.errors import (
    AlreadyRunning,
    CheckFailed,
    NotFoundError,
    ShiplineError,
    TargetError,
)
from shipline.process import hold_lock
from shipline.targets.local.gateway import DRAIN_SECONDS, Gateway
from shipline.targets.local.metrics import GatewayMetrics
from shipline.targets.local.supervisor import (
    PortBook,
    Replica,
    Supervisor,
    Yielding,
    http_status,
)
from shipline.targets.ordering import Sequencer

WORKLOAD = [sys.executable, "-m", "shipline.targets.local.workload"]
# Where the demo workload's Python finds shipline: the folder holding the package, alone. With
# every entry of this process's own path in front of its standard library (a working folder,
# the standard library twice), replicas started about 3.5 % slower than the same process
# started bare; with this folder alone, 1.5 %.
WORKLOAD_PATH = str(Path(__file__).resolve().parents[3])
log = logging.getLogger("shipline.local")
RETIRING_AT_ONCE = 4  # replicas draining and stopping at the same time, after a rollout
OWNER_ENV = "SHIPLINE_LOCAL_OWNER"  # in a service's own process: the state folder it belongs to
# A rollout's state is written this long after it: rollouts close together share one write, and
# the write keeps off the start of the service queued behind it (ADR 0022).
STATE_SETTLE_SECONDS = 0.01


def _left_by(proc: Path, owner: str) -> bool:
    """Whether process `proc` is a replica of the local target of state folder `owner`: the
    demo workload carries `--owner FOLDER`, a service's own command SHIPLINE_LOCAL_OWNER."""
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in argv if a]
    if "shipline.targets.local.workload" in args and "--owner" in args:
        index = args.index("--owner")
        return index + 1 < len(args) and args[index + 1] == owner
    try:
        environ = (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"{OWNER_ENV}={owner}".encode() in environ


def stop_stale_replicas(state_dir: Path) -> int:
    """Stop replicas that an earlier worker of this state folder left behind (killed with -9),
    with whatever they started (each replica leads its own process group).

    Call it only while holding the state folder's ownership lock (no live target owns them
    then). Returns how many were stopped.
    """
    owner = str(state_dir)
    stopped = 0
    for proc in Path("/proc").glob("[0-9]*"):
        if not _left_by(proc, owner):
            continue
        pid = int(proc.name)
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGTERM)
            else:  # a child of a replica: its group leader is found (or was) on its own
                continue
            stopped += 1
        except (ProcessLookupError, PermissionError):
            pass
    return stopped


class TargetBusy(AlreadyRunning):
    """Another live process runs the local target of this state folder."""


def owned(state_dir: Path) -> bool:
    """Whether a live process runs the local target of `state_dir` (holds its ownership lock)."""
    path = state_dir / "local.lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: conflicts only with the owner's
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False


def _own(state_dir: Path) -> int:
    """Take the state folder's ownership lock for this process's life (released when it dies)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # `owned()` (shipline status) may hold the lock for a moment: wait that long.
    fd, holder = hold_lock(state_dir / "local.lock", wait_seconds=2)
    if fd is None:
        raise TargetBusy(
            f"the local target of {state_dir} is run by another process (pid {holder})",
            hint="local environments are served by one worker per state folder: stop the other"
            " worker, or give this one its own SHIPLINE_HOME",
        )
    return fd


@dataclass
class _Service:
    spec: DeploySpec
    gateway: Gateway
    replicas: list[Replica] = field(default_factory=list)
    revisions: list[dict[str, Any]] = field(default_factory=list)
    lowest_available: int | None = None
    events: list[str] = field(default_factory=list)
    canary: DeploySpec | None = None
    probe: _Prober | None = None


def _quiet(line: str) -> None:
    """A log sink that drops lines."""


def _labels(spec: DeploySpec) -> dict[str, str]:
    """A gateway's labels in its metrics: the environment and the service it serves."""
    return {"environment": spec.environment, "service": spec.service}


class _Prober:
    """Requests through a gateway at a steady rate while a canary runs, so that the analysis
    has traffic to judge even when no user sends any."""

    def __init__(self, port: int, rps: float) -> None:
        self._url = f"http://127.0.0.1:{port}/api/echo"
        self._pause = 1.0 / rps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shipline-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self._url, timeout=2):
                    pass
            except (urllib.error.URLError, OSError):
                pass  # the gateway counts the failure; that is what the probe is for
            self._stop.wait(self._pause)

    def stop(self) -> None:
        """End the probing."""
        self._stop.set()
        self._thread.join(timeout=3)


class _Retirer:
    """Stops the replicas taken out of a gateway's routes, each once the requests in flight to
    it have finished, in threads of their own: a rollout goes on as soon as its new replicas
    serve, as a Deployment's does while its old pods terminate within their grace period (a
    worker killed meanwhile leaves them to its successor's `stop_stale_replicas`)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(RETIRING_AT_ONCE, thread_name_prefix="shipline-retire")
        self._lock = threading.Lock()
        self._pending: set[Future[None]] = set()

    def retire(self, gateway: Gateway, replica: Replica) -> None:
        """Drain `replica` (out of `gateway`'s routes already), then stop it."""
        future = self._pool.submit(self._stop, gateway, replica)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    @staticmethod
    def _stop(gateway: Gateway, replica: Replica) -> None:
        if not gateway.drain(replica.port):
            log.warning("%s %s: requests still in flight after %s s; stopped anyway",
                        replica.service, replica.version, DRAIN_SECONDS)  # fmt: skip
        replica.stop()

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)
        error = future.exception()
        if error is not None:
            log.warning("stopping a retired replica failed: %s", error)

    def wait(self) -> None:
        """Until every replica retired so far has stopped."""
        with self._lock:
            pending = list(self._pending)
        wait_for(pending)

    def close(self) -> None:
        self.wait()
        self._pool.shutdown(wait=True)


class LocalTarget:
    """Services of one or more environments as processes on this machine."""

    routers: frozenset[str] = frozenset()  # the gateway's weights only

    def __init__(
        self, state_dir: Path, *, health_timeout: float = 15.0, yield_cpu: bool = False
    ) -> None:
        """`yield_cpu`: while a replica starts, this process yields the CPU to it (`Yielding`:
        the local daemon, which leads a session of its own)."""
        self.state_dir = state_dir
        self._owner_fd = _own(state_dir)
        self.stale_stopped = stop_stale_replicas(state_dir)
        self.supervisor = Supervisor()
        self._retirer = _Retirer()
        self.health_timeout = health_timeout
        self._services: dict[tuple[str, str], _Service] = {}
        self._lock = threading.RLock()
        # the changes under way and made, for a rollout queued behind another (`apply_after`)
        self._sequence = Sequencer(self._made_before)
        self._ports = PortBook()  # every port a replica or a gateway of this target listens on
        self._yield = Yielding(yield_cpu)
        # the first replica of each queued rollout, readied while the one before rolls out
        self._prepared: dict[str, tuple[DeploySpec, Replica]] = {}
        # The state files after a rollout: written by a thread of their own, one write for
        # what changed meanwhile, so a rollout does not wait for them (`_state_soon`).
        self._state_written = threading.Lock()  # one write at a time: the last is the newest
        self._state_wanted = threading.Condition()
        self._state_dirty = False
        self._state_thread: threading.Thread | None = None
        # Each service's entry of the state file as last written (its JSON text, gateway
        # port): a write after a rollout observes only the services changed since (`_stale`),
        # not every service of the machine; a whole write (`write_state`) observes them all.
        self._entries: dict[tuple[str, str], tuple[str, int]] = {}
        self._stale: set[tuple[str, str]] = set()
        # While `restore` re-creates what the file recorded, the file is left as it is (a crash
        # halfway must not leave it naming only what was restored by then); it ends with a
        # whole write.
        self._restoring = False

    # --- helpers ---------------------------------------------------------------------------

    def _replica(self, spec: DeploySpec, index: int) -> Replica:
        port = self._ports.take()
        argv = spec.command or [
            *WORKLOAD,
            "--owner",
            str(self.state_dir),
            "--service",
            spec.service,
            "--version",
            spec.version,
            "--health",
            spec.health_path,
        ]
        argv = (
            [*argv, "--port", str(port)]
            if spec.command is None
            else [a.replace("{port}", str(port)) for a in argv]
        )
        base = (
            {"PATH": "/usr/bin:/bin", "PYTHONPATH": WORKLOAD_PATH}
            if spec.command is None  # the demo workload: shipline's own Python
            else {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(Path.home())}
        )
        env = {**base, **spec.env, "PORT": str(port)}
        if spec.command is not None:
            env[OWNER_ENV] = str(self.state_dir)  # how a later worker finds it if this one dies
        log = (
            self.state_dir
            / "logs"
            / spec.environment
            / spec.service
            / f"{spec.version}-{index}-{port}.log"
        )
        return Replica(
            spec.service, spec.version, port, argv, env, log, spec.health_path, cwd=spec.workdir
        )

    def _wait_healthy(self, replica: Replica, deadline: int | None = None) -> None:
        """Wait for the replica's health path; `deadline` (the environment's progress deadline)
        or the target's own timeout."""
        seconds = deadline or self.health_timeout
        began = time.monotonic()
        end = began + seconds
        with self._yield.starting():
            while time.monotonic() < end:
                if replica.healthy(timeout=0.5):
                    return
                if replica.crash_looping:
                    break
                # Most services answer within a second: look often then, less after.
                time.sleep(0.01 if time.monotonic() - began < 2 else 0.05)
        state = "crash-looping" if replica.crash_looping or not replica.running else "not healthy"
        waited = time.monotonic() - began
        raise CheckFailed(
            f"{replica.service} {replica.version}: new replica {state} after "
            f"{waited:.1f} s (limit {seconds:g} s; restarts: {replica.restarts})"
        )

    def _route(self, svc: _Service, weights: dict[str, int] | None = None) -> None:
        backends: dict[str, list[int]] = {}
        for replica in svc.replicas:
            backends.setdefault(replica.version, []).append(replica.port)
        if weights is None:
            weights = {v: len(p) for v, p in backends.items()}
        svc.gateway.route(backends, weights)

    def _available(self, svc: _Service) -> int:
        return sum(1 for r in svc.replicas if r.running)

    def _service(self, environment: str, service: str) -> _Service:
        found = self._services.get((environment, service))
        if found is None:
            raise NotFoundError(f"{service} is not deployed to {environment}")
        return found

    def _record(self, svc: _Service, cause: str, change: str | None = None) -> int:
        number = len(svc.revisions) + 1
        svc.revisions.append(
            {
                "revision": number,
                "at": datetime.now(UTC).isoformat(),
                "cause": cause,
                "change": change,
                **svc.spec.public(),
                "_spec": svc.spec,
            }
        )
        return number

    # --- DeployTarget ------------------------------------------------------------------------

    def plan(self, spec: DeploySpec) -> DeployPlan:
        """What `apply(spec)` would change (for preview, and to tell an in-sync deploy)."""
        current = self._services.get((spec.environment, spec.service))
        return plan_change(current.spec if current else None, spec)

    def apply(
        self,
        spec: DeploySpec,
        *,
        cause: str = "deploy",
        log: LogSink = _quiet,
        record: bool = True,
        change: str | None = None,
    ) -> int:
        """Rolling update to `spec`; returns the new revision (`record=False`: re-create the
        current revision, as after a restart).

        Old replicas keep serving until each new one is healthy; never below what was available.
        A failed first deploy leaves nothing behind.
        """
        try:
            with self._sequence.making(change):  # what is queued behind it starts at its end
                return self._apply(spec, cause, log, record, change)
        finally:
            self._state_soon((spec.environment, spec.service))

    def apply_after(
        self, after: str, spec: DeploySpec, *, cause: str = "deploy", log: LogSink = _quiet,
        change: str,
    ) -> int:  # fmt: skip
        """`apply`, started the moment the change `after` is made (`OrderedApply`): the next
        service of a rollout one after another starts here, not after a round trip through the
        engine. `Withdrawn`, with nothing done, when that change failed or never came."""
        svc = self._services.get((spec.environment, spec.service))
        if svc is None or _recorded(svc.revisions, change) is None:  # else: already made
            self._prepare(change, spec)
            try:
                self._sequence.wait_for(after)
            except BaseException:
                self._unprepare(change)
                raise
        try:
            return self.apply(spec, cause=cause, log=log, change=change)
        finally:
            self._unprepare(change)  # not taken: it was made before, or failed before its start

    def _prepare(self, change: str, spec: DeploySpec) -> None:
        """Ready the first new replica of a rollout queued behind another one (its port, its
        log folder and file) while that one is under way, so that between the two only its
        process starts: the file system's calls cost a few tenths of a millisecond each on a
        busy machine, and the services start one after another."""
        replica = self._replica(spec, 0)
        try:
            replica.prepare()
        except OSError:
            return  # its start tries again, and says what is wrong
        self._prepared[change] = (spec, replica)

    def _unprepare(self, change: str) -> None:
        found = self._prepared.pop(change, None)
        if found is not None:
            found[1].discard()

    def _made_before(self, change: str) -> bool:
        """Whether a revision of any service was made by `change` (before a restart too)."""
        return any(
            _recorded(svc.revisions, change) is not None for svc in list(self._services.values())
        )

    def _state_soon(self, changed: tuple[str, str]) -> None:
        """Have the state files written by their thread with `changed` observed again, without
        waiting for them (the next `write_state` or `close` writes them if that thread has
        not yet)."""
        with self._state_wanted:
            self._stale.add(changed)
            if self._restoring:
                return
            self._state_dirty = True
            if self._state_thread is None:
                self._state_thread = threading.Thread(
                    target=self._write_state_when_wanted, name="shipline-state", daemon=True
                )
                self._state_thread.start()
            self._state_wanted.notify()

    def _write_state_when_wanted(self) -> None:
        while True:
            with self._state_wanted:
                while not self._state_dirty:
                    self._state_wanted.wait()
            time.sleep(STATE_SETTLE_SECONDS)
            try:
                self._write_changed()
            except OSError as exc:  # a full disk: tried again in a second, and by `close`
                log.warning("writing the local target's state failed: %s", exc)
                with self._state_wanted:
                    self._state_dirty = True
                time.sleep(1.0)

    def _apply(
        self, spec: DeploySpec, cause: str, log: LogSink, record: bool, change: str | None
    ) -> int:
        with self._lock:
            key = (spec.environment, spec.service)
            svc = self._services.get(key)
            done = _recorded(svc.revisions, change) if svc is not None else None
            if done is not None:
                log(f"{spec.service}: {cause} already applied (revision {done})")
                return done
            first = svc is None or not svc.replicas
            if svc is None:
                # its gateway listens, and the service is known, once its first replica has
                # started: the gateway's start overlaps the replica's own (`_roll`)
                svc = _Service(spec, Gateway(0, labels=_labels(spec)))
            old = [r for r in svc.replicas if r.version != self._canary_version(svc)]
            svc.events = []  # events are "since this rollout began", as the health check reads them
            # The disruption budget guards replicas that already served; a first deploy has none.
            svc.lowest_available = None if first else self._available(svc)
            fresh: list[Replica] = []
            retired: list[Replica] = []  # old replicas gone before their replacements were up
            ready = self._prepared.pop(change, None) if change is not None else None
            first_ready = ready[1] if ready is not None and ready[0] == spec else None
            if ready is not None and first_ready is None:
                ready[1].discard()
            try:
                self._roll(svc, spec, (old, fresh, retired), log, first_ready)
            except (CheckFailed, TargetError) as exc:  # not healthy; or it could not start
                for replica in fresh:
                    if replica in svc.replicas:
                        svc.replicas.remove(replica)
                    self.supervisor.remove(replica)
                if first:
                    svc.gateway.stop()
                    self._services.pop(key, None)
                else:
                    self._refill(svc, len(retired))
                    self._route(svc)
                    why = "not healthy" if isinstance(exc, CheckFailed) else "did not start"
                    svc.events.append(f"rollout of {spec.version} failed: new replica {why}")
                raise
            finally:
                if first_ready is not None and first_ready not in fresh:
                    first_ready.discard()  # never started (the rollout stopped before it)
            for replaced in old:
                self._retire(svc, replaced)
            for leftover in [r for r in svc.replicas if r not in fresh]:
                self._retire(svc, leftover)  # a canary's replica, now part of the promotion
            self._stop_probe(svc)
            svc.spec = spec
            return self._record(svc, cause, change) if record else len(svc.revisions)

    def _roll(
        self,
        svc: _Service,
        spec: DeploySpec,
        replicas: tuple[list[Replica], list[Replica], list[Replica]],
        log: LogSink,
        ready: Replica | None = None,
    ) -> None:
        """Replace `old` with `spec.replicas` new replicas as a Deployment's rolling update does:
        never more than `maxSurge` above nor `maxUnavailable` below the desired count. The new
        replicas go in `fresh` as they start; `retired`, the old ones that went before their
        replacements were healthy (what a failed rollout brings back). `replicas`: (old, fresh,
        retired); `ready`: the first new replica, prepared ahead (`_prepare`)."""
        old, fresh, retired = replicas
        wanted, surge, unavailable = spec.replicas, spec.max_surge, spec.max_unavailable
        while len(fresh) < wanted:
            serving = len(old) + len(fresh)
            removable = min(len(old), max(0, serving - (wanted - unavailable)))
            for _ in range(removable):
                retired.append(old.pop(0))
                self._retire(svc, retired[-1])
            serving -= removable
            self._low_water(svc)
            batch = max(1, min(wanted - len(fresh), wanted + surge - serving))
            started = []
            for _ in range(batch):
                replica, ready = ready or self._replica(spec, len(fresh)), None
                self.supervisor.add(replica)
                fresh.append(replica)
                started.append(replica)
            key = (spec.environment, spec.service)
            if key not in self._services:  # a first deploy: its replica is starting
                try:
                    self._listen(svc.gateway)
                except OSError as exc:
                    raise TargetError(
                        f"{spec.service}: its gateway cannot listen on 127.0.0.1: {exc}"
                    ) from None
                self._services[key] = svc
            for replica in started:
                self._wait_healthy(replica, spec.progress_deadline)
                took = time.monotonic() - replica.started  # the service's own start-up
                svc.replicas.append(replica)
                self._route(svc)
                log(
                    f"{spec.service} {spec.version}: replica {fresh.index(replica) + 1}/{wanted}"
                    f" healthy on :{replica.port}, {took:.3f} s after it started"
                )
            while old and len(old) + len(fresh) > wanted:
                self._retire(svc, old.pop(0))
            self._low_water(svc)

    def _low_water(self, svc: _Service) -> None:
        """Remember the fewest replicas available during this rollout (the disruption budget)."""
        if svc.lowest_available is not None:
            svc.lowest_available = min(svc.lowest_available, self._available(svc))

    def _refill(self, svc: _Service, count: int) -> None:
        """After a failed rollout, start again the old replicas it had already retired."""
        for _ in range(count):
            replica = self._replica(svc.spec, len(svc.replicas))
            self.supervisor.add(replica)
            try:
                self._wait_healthy(replica, svc.spec.progress_deadline)
            except CheckFailed:
                self.supervisor.remove(replica)
                return
            svc.replicas.append(replica)

    def _retire(self, svc: _Service, replica: Replica) -> None:
        """Take `replica` out of the routes; it stops in the background once the requests it
        is serving have finished."""
        if replica in svc.replicas:
            svc.replicas.remove(replica)
        self._route(svc)
        self.supervisor.remove(replica, stop=False)  # never started again from here on
        self._retirer.retire(svc.gateway, replica)

    def _gateway(self, spec: DeploySpec, port: int) -> Gateway:
        """A started gateway, on `port` when it is free (a restored service keeps its address)."""
        labels = _labels(spec)
        if port:
            gateway = Gateway(port, labels=labels)
            try:
                gateway.start()
                return gateway
            except OSError:
                pass
        gateway = Gateway(0, labels=labels)
        self._listen(gateway)
        return gateway

    def _listen(self, gateway: Gateway, tries: int = 3) -> None:
        """Start `gateway` on a port from the book (not the kernel's choice: it could be a
        starting replica's); another one when something else took that port meanwhile."""
        for attempt in range(tries):
            gateway.port = self._ports.take()
            try:
                gateway.start()
                return
            except OSError:
                if attempt == tries - 1:
                    raise

    def observe(self, environment: str, service: str, *, probe: bool = True) -> ServiceState:
        """Observed state: version, replicas, restarts, gateway address and weights, revision
        (`probe=False`: readiness as last probed, for bookkeeping right after a change)."""
        svc = self._service(environment, service)
        canary = self._canary_version(svc)
        replicas = [r for r in svc.replicas if r.version != canary]  # a rollout may change it
        return ServiceState(
            environment,
            service,
            svc.spec.version,
            desired=svc.spec.replicas,
            running=sum(r.running for r in replicas),
            ready=sum(r.healthy(timeout=0.5) if probe else r.known_healthy() for r in replicas),
            revision=len(svc.revisions),
            restarts=sum(r.restarts for r in replicas),
            crash_looping=sum(r.crash_looping for r in replicas),
            weights=svc.gateway.weights(),
            canary=canary,
            address=f"http://127.0.0.1:{svc.gateway.port}",
            events=tuple(svc.events),
        )

    def history(self, environment: str, service: str) -> list[Revision]:
        """Revisions, oldest first."""
        return [
            Revision(
                int(r["revision"]),
                str(r["version"]),
                int(r["replicas"]),
                str(r["at"]),
                str(r["cause"]),
                tuple(r.get("variables", ())),
                change=r.get("change"),
            )
            for r in list(self._service(environment, service).revisions)
        ]

    def rollback(
        self,
        environment: str,
        service: str,
        revision: int = 0,
        *,
        log: LogSink = _quiet,
        change: str | None = None,
    ) -> int:
        """Re-apply revision `revision` (0: the one before the current)."""
        svc = self._service(environment, service)
        done = _recorded(svc.revisions, change)
        if done is not None:
            return done
        target = len(svc.revisions) - 1 if revision == 0 else revision
        if not 1 <= target <= len(svc.revisions):
            raise NotFoundError(
                f"{service} in {environment} has no revision {target}",
                hint=f"revisions 1..{len(svc.revisions)}",
            )
        spec = svc.revisions[target - 1]["_spec"]
        return self.apply(spec, cause=f"rollback to revision {target}", log=log, change=change)

    # --- ServiceControl ------------------------------------------------------------------------

    def scale(
        self,
        environment: str,
        service: str,
        replicas: int,
        *,
        log: LogSink = _quiet,
        change: str | None = None,
    ) -> int:
        """Change the replica count (a rolling apply of the same version)."""
        svc = self._service(environment, service)
        return self.apply(
            replace(svc.spec, replicas=replicas),
            cause=f"scale to {replicas}",
            log=log,
            change=change,
        )

    def restart(
        self, environment: str, service: str, *, log: LogSink = _quiet, change: str | None = None
    ) -> int:
        """Rolling restart: new processes replace the old ones one by one."""
        svc = self._service(environment, service)
        return self.apply(svc.spec, cause="restart", log=log, change=change)

    def stop(self, environment: str, service: str | None = None) -> list[str]:
        """Stop `service` (None: every service) of `environment`; returns their names."""
        stopped = self._halt(environment, service)
        self.write_state()
        return stopped

    def _halt(self, environment: str, service: str | None) -> list[str]:
        """Stop services without recording it (a closing worker: a successor restores them)."""
        with self._lock:
            self._retirer.wait()  # while their gateways still count the requests in flight
            stopped = []
            for (env, name), svc in list(self._services.items()):
                if env != environment or service not in (None, name):
                    continue
                self._stop_probe(svc)
                for replica in svc.replicas:
                    self.supervisor.remove(replica)
                svc.gateway.stop()
                del self._services[(env, name)]
                stopped.append(name)
        return sorted(stopped)

    def health(self, environment: str, service: str, bounds: HealthBounds) -> Observation:
        """What health verification needs, including a request through the gateway."""
        svc = self._service(environment, service)
        state = self.observe(environment, service)
        url = f"http://127.0.0.1:{svc.gateway.port}{svc.spec.health_path}"
        try:
            status = http_status(svc.gateway.port, svc.spec.health_path, 2)
            ok, detail = 200 <= status < 300, f"{url} answered {status}"
        except (OSError, http.client.HTTPException) as exc:
            ok, detail = False, f"{url} unreachable ({type(exc).__name__})"
        return Observation.of(
            state, bounds, endpoint_ok=ok, endpoint_detail=detail,
            error_events=tuple(svc.events), lowest_available=svc.lowest_available,
        )  # fmt: skip

    # --- CanaryRouter --------------------------------------------------------------------------

    @staticmethod
    def _canary_version(svc: _Service) -> str | None:
        return svc.canary.version if svc.canary is not None else None

    def set_canary(
        self, spec: DeploySpec, weight: int, *, probe_rps: float = 0, log: LogSink = _quiet
    ) -> bool:
        """Start the canary replica beside stable when it is not running (True), then route
        `weight` % of the traffic to it; probe requests run while the canary does."""
        with self._lock:
            svc = self._service(spec.environment, spec.service)
            stable = svc.spec.version
            if stable == spec.version:
                raise CheckFailed(f"{spec.service} {spec.version} is already the stable version")
            started = False
            running = [r for r in svc.replicas if r.version == spec.version and r.running]
            if svc.canary != spec or not running:
                for replica in [r for r in svc.replicas if r.version != stable]:
                    self._retire(svc, replica)
                replica = self._replica(spec, 0)
                self.supervisor.add(replica)
                try:
                    self._wait_healthy(replica, spec.progress_deadline)
                except CheckFailed:
                    self.supervisor.remove(replica)
                    svc.events.append(f"canary {spec.version} not healthy")
                    raise
                svc.replicas.append(replica)
                svc.canary, started = spec, True
                log(f"{spec.service}: canary {spec.version} started on :{replica.port}")
            self._route(svc, {stable: 100 - weight, spec.version: weight})
            if probe_rps > 0 and svc.probe is None:
                svc.probe = _Prober(svc.gateway.port, probe_rps)
            self._state_soon((spec.environment, spec.service))  # its canary and weights
            return started

    def end_canary(self, spec: DeploySpec, *, promote: bool, log: LogSink = _quiet) -> int:
        """Promote the canary (a rolling apply of its spec) or remove it; all traffic to stable."""
        with self._lock:
            svc = self._service(spec.environment, spec.service)
            if promote:
                return self.apply(spec, cause="canary promoted", log=log)
            self._stop_probe(svc)
            for replica in [r for r in svc.replicas if r.version != svc.spec.version]:
                self._retire(svc, replica)
            svc.canary = None
            self._route(svc)
            self.write_state()
            svc.events.append(f"canary {spec.version} rolled back")
            log(f"{spec.service}: canary {spec.version} removed; all traffic on {svc.spec.version}")
            return len(svc.revisions)

    def metrics(self, environment: str, service: str) -> MetricSource:
        """The gateway's per-version counters."""
        return GatewayMetrics(self._service(environment, service).gateway)

    def counters(self, environment: str, service: str, *, reset: bool) -> dict[str, Any]:
        """The gateway's per-version counters since their last reset."""
        return self._service(environment, service).gateway.counters(reset=reset)

    @staticmethod
    def _stop_probe(svc: _Service) -> None:
        if svc.probe is not None:
            svc.probe.stop()
            svc.probe = None
        svc.canary = None

    def services(self) -> list[tuple[str, str]]:
        """(environment, service) pairs deployed here."""
        return sorted(self._services)

    def close(self) -> None:
        """Stop everything (what ran is written down first, for a successor to restore)."""
        with self._state_wanted:
            dirty = self._state_dirty
        if dirty:
            try:
                self.write_state(probe=False)
            except OSError as exc:  # its state folder is gone, or full: the services stop anyway
                log.warning("writing the local target's state failed: %s", exc)
        for env in {env for env, _ in self._services}:
            self._halt(env, None)
        self._retirer.close()
        self.supervisor.shutdown()
        self._yield.close()
        if self._owner_fd >= 0:
            os.close(self._owner_fd)  # releases the ownership lock
            self._owner_fd = -1

    def write_state(self, *, probe: bool = True) -> None:
        """Record what runs where for `shipline status` outside the worker, what a successor
        needs to re-create it (variable values only of variables that are not secret), and the
        gateways as Prometheus file-based discovery targets (`prometheus-targets.json`).

        Safe to call from several threads: one writes at a time, each what is true when it
        begins, through its own temporary file.
        """
        with self._state_written:
            with self._state_wanted:
                self._state_dirty = False  # this write covers every change made until now
                self._stale.clear()
            self._write_state(set(self._services.copy()), probe)

    def _write_changed(self) -> None:
        """The state files after rollouts: the services changed since the last write observed
        again (readiness as last probed), the others as that write observed them (the worker's
        periodic `write_state` observes every service)."""
        with self._state_written:
            with self._state_wanted:
                self._state_dirty = False
                changed, self._stale = self._stale, set()
            self._write_state(changed, probe=False)

    def _write_state(self, changed: set[tuple[str, str]], probe: bool) -> None:
        present = set(self._services.copy())
        for key in set(self._entries) - present:  # stopped since
            del self._entries[key]
        for env, name in sorted(present & changed | present - set(self._entries)):
            svc = self._services.get((env, name))
            if svc is None:  # stopped meanwhile
                continue
            try:
                entry = {
                    **self.observe(env, name, probe=probe).as_dict(),
                    "gatewayPort": svc.gateway.port,
                    "history": [r.as_dict() for r in self.history(env, name)],
                    "restore": self._restorable(svc),
                }
            except NotFoundError:  # stopped meanwhile
                self._entries.pop((env, name), None)
                continue
            self._entries[(env, name)] = (json.dumps(entry, default=str), svc.gateway.port)
        written = sorted(self._entries.items())
        # compact, and each entry encoded once: the C encoder, ten times faster than indented
        self._replace(
            self.state_dir / "local-state.json",
            "{" + ",".join(f"{json.dumps(f'{e}/{n}')}:{text}" for (e, n), (text, _) in written)
            + "}",
        )  # fmt: skip
        # Prometheus file-based service discovery: every gateway with its labels.
        targets = [
            {"targets": [f"127.0.0.1:{port}"], "labels": {"environment": e, "service": n}}
            for (e, n), (_, port) in written
        ]
        self._replace(self.state_dir / "prometheus-targets.json", json.dumps(targets))

    @staticmethod
    def _replace(path: Path, text: str) -> None:
        """Write `path` whole or not at all (each thread through its own temporary file). A
        state folder deleted meanwhile is not made again (FileNotFoundError): its daemon sees it
        gone and stops its services."""
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)

    @staticmethod
    def _restorable(svc: _Service) -> dict[str, Any]:
        return {
            "gatewayPort": svc.gateway.port,
            "spec": svc.spec.stored(),
            "revisions": [
                {**{k: v for k, v in r.items() if k != "_spec"}, "spec": r["_spec"].stored()}
                for r in list(svc.revisions)
            ],
        }

    def restore(
        self,
        secrets: SecretValues,
        *,
        log: Callable[[str], None] = lambda line: None,
    ) -> list[str]:
        """Re-create what the state file says ran here (after a restart or a killed worker): the
        same versions, replicas, gateway ports and revision history; secret values come from
        `secrets(environment, service, parameters)`, as they were never written down. Returns
        what could not be restored, one line each.
        """
        path = self.state_dir / "local-state.json"
        try:
            recorded = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            return [f"{path} is not valid JSON; nothing restored"]
        with self._state_wanted:
            self._restoring = True
        try:
            problems = self._restore(recorded, secrets, log)
        finally:
            with self._state_wanted:
                self._restoring = False
        self.write_state()
        return problems

    def _restore(
        self, recorded: dict[str, Any], secrets: SecretValues, log: Callable[[str], None]
    ) -> list[str]:
        problems: list[str] = []
        for entry in recorded.values():
            saved = entry.get("restore") if isinstance(entry, dict) else None
            if not saved:
                continue
            spec_data = saved["spec"]
            key = (str(spec_data["environment"]), str(spec_data["service"]))
            if key in self._services:
                continue
            try:
                values = secrets(*key, dict(spec_data.get("parameters") or {}))
                spec = DeploySpec.from_stored(spec_data, values)
                if spec.missing_secrets():
                    raise NotFoundError(
                        f"secret variable(s) {', '.join(spec.missing_secrets())} could not be"
                        " resolved",
                        hint="check the secret store; the next deploy re-creates the service",
                    )
                revisions = [
                    {
                        **{k: v for k, v in r.items() if k != "spec"},
                        "_spec": DeploySpec.from_stored(r["spec"], values),
                    }
                    for r in saved.get("revisions", [])
                ]
            except ShiplineError as exc:
                problems.append(f"{key[1]} in {key[0]} not restored: {exc}")
                continue
            with self._lock:
                svc = self._services[key] = _Service(
                    spec, self._gateway(spec, int(saved.get("gatewayPort", 0))), revisions=revisions
                )
            try:
                self.apply(spec, record=False)  # one line per service: below
            except CheckFailed as exc:
                problems.append(f"{key[1]} in {key[0]} not restored: {exc}")
                svc.events.append(f"restore failed: {exc}")
                continue
            log(f"{key[1]} {spec.version} restored in {key[0]} on :{svc.gateway.port}")
        return problems


def create(context: TargetContext) -> LocalTarget:
    """The `local` target kind: this process runs the state folder's services (one owner)."""
    return LocalTarget(context.state_dir)


class LocalView:
    """The local target as another process sees it: what the owning worker last recorded."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        path = state_dir / "local-state.json"
        try:
            self._recorded: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            self._recorded = {}

    def observe(self, environment: str, service: str) -> ServiceState:
        """The recorded state of `service` in `environment`."""
        entry = self._recorded.get(f"{environment}/{service}")
        if not isinstance(entry, dict):
            raise NotFoundError(f"{service} is not deployed to {environment}")
        return ServiceState(
            environment,
            service,
            str(entry["version"]),
            desired=int(entry["desired"]),
            running=int(entry["running"]),
            ready=int(entry["ready"]),
            revision=int(entry["revision"]),
            restarts=int(entry.get("restarts", 0)),
            crash_looping=int(entry.get("crashLooping", 0)),
            weights={str(k): int(v) for k, v in entry.get("weights", {}).items()},
            canary=entry.get("canary"),
            address=entry.get("address"),
            events=tuple(entry.get("events", ())),
        )

    def live(self) -> bool:
        """Whether this state folder's local services run now (their daemon holds the lock)."""
        return owned(self.state_dir)

    def log_files(self, environment: str, service: str) -> list[Path]:
        """The replicas' log files (`logs/<environment>/<service>/`), oldest first."""
        folder = self.state_dir / "logs" / environment / service
        if not folder.exists():
            return []
        return sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime)


def view(context: TargetContext) -> LocalView:
    """The `local` kind's view for processes other than its worker."""
    return LocalView(context.state_dir)


def _recorded(revisions: list[dict[str, Any]], change: str | None) -> int | None:
    """The revision recorded under idempotency key `change`, if any."""
    if change is None:
        return None
    return next((int(r["revision"]) for r in revisions if r.get("change") == change), None)
