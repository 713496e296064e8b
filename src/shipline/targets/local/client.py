"""The `local` target as the engine uses it: a client of the state folder's daemon
(`daemon.py`), started on first use, so that the services outlive a killed worker.

One worker uses a state folder's local services at a time (an exclusive lock on
`local-client.lock`); the daemon owns them (`local.lock`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from shipline.domain.canary import Sample
from shipline.domain.deploy import DeployPlan, DeploySpec, Revision, ServiceState
from shipline.domain.health import HealthBounds, Observation
from shipline.domain.ports import LogSink, MetricSource, SecretValues, TargetContext
from shipline.errors import TargetError
from shipline.process import hold_lock
from shipline.targets.local.daemon import SOCKET
from shipline.targets.local.target import TargetBusy
from shipline.targets.local.wire import decode, encode, raise_error

START_SECONDS = 30.0


def _quiet(line: str) -> None:
    """A log sink that drops lines."""


class LocalClient:
    """DeployTarget, OrderedApply, ServiceControl, CanaryRouter and Restorable over the
    daemon's socket."""

    routers: frozenset[str] = frozenset()  # the gateway's weights only

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = self._exclusive(state_dir / "local-client.lock")
        self.daemon_pid = self._ensure_daemon()

    @staticmethod
    def _exclusive(path: Path) -> int:
        fd, holder = hold_lock(path)
        if fd is None:
            raise TargetBusy(
                f"the local services of {path.parent} are used by another worker (pid {holder})",
                hint="local environments are served by one worker per state folder: stop the"
                " other worker, or give this one its own SHIPLINE_HOME",
            )
        return fd

    def _ensure_daemon(self) -> int:
        """The daemon's pid: the running one, or one started now (detached: it outlives us)."""
        try:
            return int(self._call("ping"))
        except (OSError, TargetError):
            pass
        # Started through `sh ... &`: the daemon is not our child, so nothing waits for it and
        # it lives on when this worker dies.
        with open(self.state_dir / "local-daemon.log", "ab") as log:
            subprocess.run(
                [
                    "sh",
                    "-c",
                    'exec "$@" &',
                    "sh",
                    sys.executable,
                    "-m",
                    "shipline.targets.local.daemon",
                    "--state",
                    str(self.state_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
                check=False,
                timeout=30,
            )
        end = time.monotonic() + START_SECONDS
        while time.monotonic() < end:
            try:
                return int(self._call("ping"))
            except (OSError, TargetError):
                time.sleep(0.05)
        tail = (self.state_dir / "local-daemon.log").read_text(errors="replace")[-500:]
        raise TargetError(f"the local daemon did not start: {tail.strip()}")

    def _call(self, method: str, log: LogSink = _quiet, **args: Any) -> Any:
        path = self.state_dir / SOCKET
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(str(path))
                conn.sendall((json.dumps({"method": method, "args": encode(args)}) + "\n").encode())
                with conn.makefile("rb") as replies:
                    for raw in replies:
                        reply = json.loads(raw)
                        if "log" in reply:
                            log(str(reply["log"]))
                        elif "error" in reply:
                            raise_error(reply["error"])
                        else:
                            return decode(reply.get("result"))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise TargetError(f"the local daemon of {self.state_dir} is not running") from exc
        raise TargetError(f"the local daemon of {self.state_dir} stopped answering")

    # --- DeployTarget ------------------------------------------------------------------------

    def plan(self, spec: DeploySpec) -> DeployPlan:
        """What applying `spec` would change."""
        found: DeployPlan = self._call("plan", spec=spec)
        return found

    def apply(
        self,
        spec: DeploySpec,
        *,
        cause: str = "deploy",
        log: LogSink = _quiet,
        change: str | None = None,
    ) -> int:
        """Rolling update to `spec` (once per `change`)."""
        return int(self._call("apply", log, spec=spec, cause=cause, change=change))

    def apply_after(
        self, after: str, spec: DeploySpec, *, cause: str = "deploy", log: LogSink = _quiet,
        change: str,
    ) -> int:  # fmt: skip
        """`apply`, queued in the daemon behind the change `after` (`OrderedApply`): it starts
        there the moment that one is made."""
        return int(
            self._call("apply_after", log, after=after, spec=spec, cause=cause, change=change)
        )

    def observe(self, environment: str, service: str) -> ServiceState:
        """What runs now."""
        found: ServiceState = self._call("observe", environment=environment, service=service)
        return found

    def history(self, environment: str, service: str) -> list[Revision]:
        """Revisions, oldest first."""
        found: list[Revision] = self._call("history", environment=environment, service=service)
        return found

    def rollback(
        self,
        environment: str,
        service: str,
        revision: int = 0,
        *,
        log: LogSink = _quiet,
        change: str | None = None,
    ) -> int:
        """Re-apply `revision` (0: the previous)."""
        return int(
            self._call(
                "rollback",
                log,
                environment=environment,
                service=service,
                revision=revision,
                change=change,
            )
        )

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
        """Change the replica count."""
        return int(
            self._call(
                "scale",
                log,
                environment=environment,
                service=service,
                replicas=replicas,
                change=change,
            )
        )

    def restart(
        self, environment: str, service: str, *, log: LogSink = _quiet, change: str | None = None
    ) -> int:
        """Rolling restart."""
        return int(
            self._call("restart", log, environment=environment, service=service, change=change)
        )

    def stop(self, environment: str, service: str | None = None) -> list[str]:
        """Stop services of `environment`."""
        found: list[str] = self._call("stop", environment=environment, service=service)
        return found

    def health(self, environment: str, service: str, bounds: HealthBounds) -> Observation:
        """What the six checks need."""
        found: Observation = self._call(
            "health", environment=environment, service=service, bounds=bounds
        )
        return found

    # --- CanaryRouter --------------------------------------------------------------------------

    def set_canary(
        self, spec: DeploySpec, weight: int, *, probe_rps: float = 0, log: LogSink = _quiet
    ) -> bool:
        """Run the canary beside stable at `weight` %."""
        return bool(self._call("set_canary", log, spec=spec, weight=weight, probeRps=probe_rps))

    def end_canary(self, spec: DeploySpec, *, promote: bool, log: LogSink = _quiet) -> int:
        """Promote or remove the canary."""
        return int(self._call("end_canary", log, spec=spec, promote=promote))

    def metrics(self, environment: str, service: str) -> MetricSource:
        """The gateway's per-version counters, read through the daemon."""
        return _RemoteCounters(self, environment, service)

    # --- Restorable ----------------------------------------------------------------------------

    def restore(self, secrets: SecretValues, *, log: LogSink = _quiet) -> list[str]:
        """Let the daemon re-create what the state file says ran (nothing when it still runs
        it, as after a killed worker); secret values are resolved here and passed in memory."""
        path = self.state_dir / "local-state.json"
        try:
            recorded = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            recorded = {}
        running = {f"{e}/{s}" for e, s in self._call("services")}
        values: dict[str, dict[str, str]] = {}
        for key, entry in recorded.items():
            if key in running or not isinstance(entry, dict) or not entry.get("restore"):
                continue
            environment, service = key.split("/", 1)
            parameters = (entry["restore"].get("spec") or {}).get("parameters") or {}
            try:
                values[key] = secrets(environment, service, parameters)
            except Exception as exc:  # a store that is down: the daemon names what it skips
                log(f"{service} in {environment}: secrets not resolved ({type(exc).__name__})")
        problems: list[str] = self._call("restore", log, secrets=values)
        return problems

    def write_state(self) -> None:
        """Record what runs (for `status` in other processes, and for a successor)."""
        self._call("write_state")

    def close(self) -> None:
        """A graceful stop: the daemon stops the services and exits (ADR 0004)."""
        with contextlib.suppress(TargetError):
            self._call("shutdown")
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


class _RemoteCounters:
    """MetricSource over the daemon's gateway counters."""

    def __init__(self, client: LocalClient, environment: str, service: str) -> None:
        self._client, self._environment, self._service = client, environment, service
        self._last: dict[str, Any] = {}

    def collect(self) -> None:
        """End the interval: take the counters and start new ones."""
        self._last = self._client._call(
            "counters", environment=self._environment, service=self._service, reset=True
        )

    def sample(self, version: str, seconds: float) -> Sample:
        """The collected interval's sample of `version`."""
        data = self._last.get(version) or {"requests": 0, "responses": {}, "latenciesMs": []}
        return Sample(
            int(data["requests"]), int(data["responses"].get("5xx", 0)), tuple(data["latenciesMs"])
        )


def create(context: TargetContext) -> LocalClient:
    """The `local` target kind: the state folder's daemon, through a client."""
    return LocalClient(context.state_dir)
