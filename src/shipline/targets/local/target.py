"""The local target: each (environment, service) is a gateway port in front of replica processes.

Deploys are rolling (a new replica up and healthy before an old one goes) or canary (new replicas
beside the stable ones, traffic shifted by weight, analysed between steps, promoted or rolled
back). Every apply records a revision, as a Kubernetes Deployment does; rollback re-applies one.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipline.domain.canary import (
    CanaryOutcome,
    IntervalAssessment,
    IntervalVerdict,
    assess_canary,
    assess_interval,
)
from shipline.domain.health import Observation
from shipline.domain.models import AnalysisThresholds
from shipline.errors import CheckFailed, NotFoundError, ShiplineError, TechnicalError
from shipline.targets.local.gateway import Gateway
from shipline.targets.local.metrics import GatewayMetrics
from shipline.targets.local.supervisor import Replica, Supervisor, free_port

WORKLOAD = [sys.executable, "-m", "shipline.targets.local.workload"]


def stop_stale_replicas(state_dir: Path) -> int:
    """Stop replicas that an earlier worker of this state folder left behind (killed with -9).

    They are found by the `--owner` argument every replica carries; call it only while holding the
    state folder's ownership lock (no live target owns them then). Returns how many were stopped.
    """
    owner = str(state_dir)
    stopped = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if "shipline.targets.local.workload" not in args or "--owner" not in args:
            continue
        index = args.index("--owner")
        if index + 1 < len(args) and args[index + 1] == owner:
            try:
                os.kill(int(proc.name), signal.SIGTERM)
                stopped += 1
            except (ProcessLookupError, PermissionError):
                pass
    return stopped


class TargetBusy(TechnicalError):
    """Another live process runs the local target of this state folder."""

    terminal = True


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
    path = state_dir / "local.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    end = time.monotonic() + 2  # `owned()` (shipline status) may hold it for a moment
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
        raise TargetBusy(
            f"the local target of {state_dir} is run by another process (pid {holder})",
            hint="local environments are served by one worker per state folder: stop the other"
            " worker, or give this one its own SHIPLINE_HOME",
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


@dataclass(frozen=True)
class ServiceSpec:
    """Desired state of one service in one environment."""

    environment: str
    service: str
    version: str
    replicas: int = 1
    health_path: str = "/health"
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None  # default: the demo workload
    secret_names: frozenset[str] = frozenset()  # keys of `env` whose values are secret

    def stored(self) -> dict[str, Any]:
        """What a successor needs to re-create the service: secret values left out."""
        return {
            "environment": self.environment,
            "service": self.service,
            "version": self.version,
            "replicas": self.replicas,
            "healthPath": self.health_path,
            "command": self.command,
            "env": {k: v for k, v in self.env.items() if k not in self.secret_names},
            "secretNames": sorted(self.secret_names),
        }

    @classmethod
    def from_stored(cls, data: dict[str, Any], secrets: dict[str, str]) -> ServiceSpec:
        """The spec `stored()` wrote, its secret values taken from `secrets`."""
        names = frozenset(str(n) for n in data.get("secretNames", []))
        missing = sorted(names - set(secrets))
        if missing:
            raise NotFoundError(
                f"secret variable(s) {', '.join(missing)} could not be resolved",
                hint="check the secret store; the next deploy re-creates the service",
            )
        return cls(
            str(data["environment"]),
            str(data["service"]),
            str(data["version"]),
            replicas=int(data["replicas"]),
            health_path=str(data["healthPath"]),
            env={
                **{str(k): str(v) for k, v in data["env"].items()},
                **{n: secrets[n] for n in names},
            },
            command=data.get("command"),
            secret_names=names,
        )

    def public(self) -> dict[str, Any]:
        """The spec as recorded in revisions: variable names, never values."""
        return {
            "version": self.version,
            "replicas": self.replicas,
            "healthPath": self.health_path,
            "variables": sorted(self.env),
            "command": self.command,
        }


@dataclass
class _Service:
    spec: ServiceSpec
    gateway: Gateway
    replicas: list[Replica] = field(default_factory=list)
    revisions: list[dict[str, Any]] = field(default_factory=list)
    lowest_available: int | None = None
    events: list[str] = field(default_factory=list)


class LocalTarget:
    """Services of one or more environments as processes on this machine."""

    def __init__(self, state_dir: Path, *, health_timeout: float = 15.0) -> None:
        self.state_dir = state_dir
        self._owner_fd = _own(state_dir)
        self.stale_stopped = stop_stale_replicas(state_dir)
        self.supervisor = Supervisor()
        self.health_timeout = health_timeout
        self._services: dict[tuple[str, str], _Service] = {}
        self._lock = threading.RLock()

    # --- helpers ---------------------------------------------------------------------------

    def _replica(self, spec: ServiceSpec, index: int) -> Replica:
        port = free_port()
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
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": ":".join(sys.path),
            **spec.env,
            "PORT": str(port),
        }
        log = (
            self.state_dir
            / "logs"
            / spec.environment
            / spec.service
            / f"{spec.version}-{index}-{port}.log"
        )
        return Replica(spec.service, spec.version, port, argv, env, log, spec.health_path)

    def _wait_healthy(self, replica: Replica) -> None:
        end = time.monotonic() + self.health_timeout
        while time.monotonic() < end:
            if replica.healthy(timeout=0.5):
                return
            if replica.crash_looping:
                break
            time.sleep(0.05)
        state = "crash-looping" if replica.crash_looping or not replica.running else "not healthy"
        raise CheckFailed(
            f"{replica.service} {replica.version}: new replica {state} after "
            f"{self.health_timeout:g} s (restarts: {replica.restarts})"
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

    def _record(self, svc: _Service, cause: str) -> int:
        number = len(svc.revisions) + 1
        svc.revisions.append(
            {
                "revision": number,
                "at": datetime.now(UTC).isoformat(),
                "cause": cause,
                **svc.spec.public(),
                "_spec": svc.spec,
            }
        )
        return number

    # --- the port ------------------------------------------------------------------------------

    def plan(self, spec: ServiceSpec) -> dict[str, Any]:
        """What `apply(spec)` would change (for preview)."""
        current = self._services.get((spec.environment, spec.service))
        before = current.spec.public() if current else None
        after = spec.public()
        changes = {
            k: {"from": (before or {}).get(k), "to": v}
            for k, v in after.items()
            if before is None or before.get(k) != v
        }
        if current:
            old_env, new_env = current.spec.env, spec.env
            changed_vars = sorted(
                k for k in set(old_env) | set(new_env) if old_env.get(k) != new_env.get(k)
            )
            if changed_vars:
                changes["variableValues"] = {"changed": changed_vars}
        return {
            "service": spec.service,
            "environment": spec.environment,
            "create": current is None,
            "changes": changes,
        }

    def apply(
        self,
        spec: ServiceSpec,
        *,
        cause: str = "deploy",
        log: Callable[[str], None] = lambda line: None,
        record: bool = True,
    ) -> int:
        """Rolling update to `spec`; returns the new revision (`record=False`: re-create the
        current revision, as after a restart).

        Old replicas keep serving until each new one is healthy; never below what was available.
        """
        with self._lock:
            key = (spec.environment, spec.service)
            svc = self._services.get(key)
            if svc is None:
                svc = self._services[key] = _Service(spec, self._gateway(spec, 0))
            old = list(svc.replicas)
            svc.events = []  # events are "since this rollout began", as the health check reads them
            svc.lowest_available = self._available(svc) if old else None
            fresh: list[Replica] = []
            try:
                for index in range(spec.replicas):
                    replica = self._replica(spec, index)
                    self.supervisor.add(replica)
                    fresh.append(replica)
                    self._wait_healthy(replica)
                    svc.replicas.append(replica)
                    self._route(svc)
                    log(
                        f"{spec.service} {spec.version}: replica {index + 1}/{spec.replicas}"
                        f" healthy on :{replica.port}"
                    )
                    if old:
                        retired = old.pop(0)
                        svc.replicas.remove(retired)
                        self._route(svc)
                        self.supervisor.remove(retired)
                    available = self._available(svc)
                    svc.lowest_available = (
                        available
                        if svc.lowest_available is None
                        else min(svc.lowest_available, available)
                    )
            except CheckFailed:
                for replica in fresh:
                    if replica in svc.replicas:
                        svc.replicas.remove(replica)
                    self.supervisor.remove(replica)
                self._route(svc)
                svc.events.append(f"rollout of {spec.version} failed: new replica not healthy")
                raise
            for retired in old:
                svc.replicas.remove(retired)
                self._route(svc)
                self.supervisor.remove(retired)
            svc.spec = spec
            return self._record(svc, cause) if record else len(svc.revisions)

    def _gateway(self, spec: ServiceSpec, port: int) -> Gateway:
        """A started gateway, on `port` when it is free (a restored service keeps its address)."""
        labels = {"environment": spec.environment, "service": spec.service}
        if port:
            gateway = Gateway(port, labels=labels)
            try:
                gateway.start()
                return gateway
            except OSError:
                pass
        gateway = Gateway(0, labels=labels)
        gateway.start()
        return gateway

    def canary(
        self,
        spec: ServiceSpec,
        thresholds: AnalysisThresholds,
        *,
        steps: list[int],
        bake_seconds: float,
        probe_rps: float = 0.0,
        metrics: Any = None,
        log: Callable[[str], None] = lambda line: None,
    ) -> int:
        """Canary: one replica of the new version beside the stable ones, traffic shifted by
        `steps` (weights in %), analysed every `thresholds.interval_seconds` against the stable
        version; rolled back at the failure limit, promoted (a rolling apply) after the last step.

        With `probe_rps`, the analysis sends its own requests through the gateway as well.
        `metrics` is the source (default: the gateway's own counters; or PrometheusMetrics).
        """
        svc = self._services.get((spec.environment, spec.service))
        if svc is None or not svc.replicas:
            return self.apply(spec, log=log)
        stable = svc.spec.version
        if stable == spec.version:
            return self.apply(spec, log=log)
        svc.events = []
        replica = self._replica(spec, 0)
        self.supervisor.add(replica)
        try:
            self._wait_healthy(replica)
        except CheckFailed:
            self.supervisor.remove(replica)
            raise
        svc.replicas.append(replica)
        assessments: list[IntervalAssessment] = []
        seen = 0
        source = metrics if metrics is not None else GatewayMetrics(svc.gateway)
        try:
            for weight in steps:
                if weight >= 100:
                    break
                self._route(svc, {stable: 100 - weight, spec.version: weight})
                log(f"{spec.service}: canary {spec.version} at {weight}% (stable {stable})")
                source.collect()
                end = time.monotonic() + max(bake_seconds, thresholds.interval_seconds)
                while time.monotonic() < end:
                    self._interval(svc, thresholds.interval_seconds, probe_rps, spec.health_path)
                    source.collect()
                    interval = thresholds.interval_seconds
                    assessment = assess_interval(
                        source.sample(spec.version, interval),
                        source.sample(stable, interval),
                        thresholds,
                    )
                    assessments.append(assessment)
                    log(
                        f"{spec.service}: analysis {assessment.verdict.value}: "
                        + "; ".join(assessment.reasons)
                    )
                    decision = assess_canary(assessments, thresholds, intervals_required=10**9)
                    if decision.outcome == CanaryOutcome.ROLLBACK:
                        raise CheckFailed(
                            f"canary {spec.service} {spec.version} rolled back: {decision.reason}"
                        )
                step_verdicts = [a.verdict for a in assessments[seen:]]
                seen = len(assessments)
                if IntervalVerdict.SUCCEEDED not in step_verdicts:
                    raise CheckFailed(
                        f"canary {spec.service} {spec.version} rolled back: no good interval"
                        f" at {weight}% (too little traffic to judge)"
                    )
        except CheckFailed:
            svc.replicas.remove(replica)
            self._route(svc)
            self.supervisor.remove(replica)
            svc.events.append(f"canary {spec.version} rolled back")
            log(f"{spec.service}: canary {spec.version} removed; all traffic on {stable}")
            raise
        svc.replicas.remove(replica)
        self._route(svc)
        self.supervisor.remove(replica)
        log(f"{spec.service}: canary {spec.version} promoted")
        return self.apply(spec, cause="canary promoted", log=log)

    def _interval(self, svc: _Service, seconds: float, probe_rps: float, path: str) -> None:
        end = time.monotonic() + seconds
        if probe_rps <= 0:
            time.sleep(seconds)
            return
        import urllib.error
        import urllib.request

        pause = 1.0 / probe_rps
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{svc.gateway.port}/api/echo", timeout=2
                ):
                    pass
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(pause)

    def status(self, environment: str, service: str) -> dict[str, Any]:
        """Observed state: version, replicas, restarts, gateway port and weights, revision."""
        svc = self._service(environment, service)
        replicas = list(svc.replicas)  # a rollout may change the list meanwhile
        return {
            "service": service,
            "environment": environment,
            "version": svc.spec.version,
            "desired": svc.spec.replicas,
            "running": sum(r.running for r in replicas),
            "ready": sum(r.healthy(timeout=0.5) for r in replicas),
            "restarts": sum(r.restarts for r in replicas),
            "crashLooping": sum(r.crash_looping for r in replicas),
            "gatewayPort": svc.gateway.port,
            "weights": svc.gateway.weights(),
            "revision": len(svc.revisions),
            "events": list(svc.events),
        }

    def observe(
        self,
        environment: str,
        service: str,
        *,
        min_replicas: int = 1,
        max_replicas: int = 20,
        required_available: int = 0,
    ) -> Observation:
        """What health verification needs, including a request through the gateway."""
        svc = self._service(environment, service)
        state = self.status(environment, service)
        import urllib.error
        import urllib.request

        url = f"http://127.0.0.1:{svc.gateway.port}{svc.spec.health_path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                ok, detail = 200 <= response.status < 300, f"{url} answered {response.status}"
        except urllib.error.HTTPError as exc:
            ok, detail = False, f"{url} answered {exc.code}"
        except OSError as exc:
            ok, detail = False, f"{url} unreachable ({type(exc).__name__})"
        return Observation(
            desired=state["desired"],
            running=state["running"],
            ready=state["ready"],
            restarts=state["restarts"],
            crash_looping=state["crashLooping"],
            endpoint_ok=ok,
            endpoint_detail=detail,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            required_available=required_available,
            lowest_available=svc.lowest_available,
            error_events=tuple(svc.events),
        )

    def history(self, environment: str, service: str) -> list[dict[str, Any]]:
        """Revisions, oldest first."""
        return [
            {k: v for k, v in r.items() if not k.startswith("_")}
            for r in self._service(environment, service).revisions
        ]

    def rollback(self, environment: str, service: str, revision: int = 0, **kw: Any) -> int:
        """Re-apply revision `revision` (0: the one before the current)."""
        svc = self._service(environment, service)
        target = len(svc.revisions) - 1 if revision == 0 else revision
        if not 1 <= target <= len(svc.revisions):
            raise NotFoundError(
                f"{service} in {environment} has no revision {target}",
                hint=f"revisions 1..{len(svc.revisions)}",
            )
        spec = svc.revisions[target - 1]["_spec"]
        return self.apply(spec, cause=f"rollback to revision {target}", **kw)

    def scale(self, environment: str, service: str, replicas: int, **kw: Any) -> int:
        """Change the replica count (a rolling apply of the same version)."""
        svc = self._service(environment, service)
        from dataclasses import replace

        return self.apply(replace(svc.spec, replicas=replicas), cause=f"scale to {replicas}", **kw)

    def restart(self, environment: str, service: str, **kw: Any) -> int:
        """Rolling restart: new processes replace the old ones one by one."""
        svc = self._service(environment, service)
        return self.apply(svc.spec, cause="restart", **kw)

    def down(self, environment: str) -> list[str]:
        """Stop every service of `environment`; returns their names."""
        with self._lock:
            stopped = []
            for (env, name), svc in list(self._services.items()):
                if env != environment:
                    continue
                for replica in svc.replicas:
                    self.supervisor.remove(replica)
                svc.gateway.stop()
                del self._services[(env, name)]
                stopped.append(name)
            return sorted(stopped)

    def services(self) -> list[tuple[str, str]]:
        """(environment, service) pairs deployed here."""
        return sorted(self._services)

    def close(self) -> None:
        """Stop everything."""
        for env in {env for env, _ in self._services}:
            self.down(env)
        self.supervisor.shutdown()
        if self._owner_fd >= 0:
            os.close(self._owner_fd)  # releases the ownership lock
            self._owner_fd = -1

    def write_state(self) -> None:
        """Record what runs where for `shipline status` outside the worker, what a successor
        needs to re-create it (variable values only of variables that are not secret), and the
        gateways as Prometheus file-based discovery targets (`prometheus-targets.json`).

        Safe to call from several threads: each writes its own temporary file.
        """
        data: dict[str, Any] = {}
        for env, name in sorted(self._services.copy()):
            svc = self._services.get((env, name))
            if svc is None:  # stopped meanwhile
                continue
            try:
                data[f"{env}/{name}"] = {
                    **self.status(env, name),
                    "history": self.history(env, name),
                    "restore": self._restorable(svc),
                }
            except NotFoundError:  # stopped meanwhile
                continue
        self._replace(self.state_dir / "local-state.json", data)
        # Prometheus file-based service discovery: every gateway with its labels.
        self._replace(
            self.state_dir / "prometheus-targets.json",
            [
                {
                    "targets": [f"127.0.0.1:{entry['gatewayPort']}"],
                    "labels": {
                        "environment": entry["environment"],
                        "service": entry["service"],
                    },
                }
                for entry in data.values()
            ],
        )

    @staticmethod
    def _replace(path: Path, data: Any) -> None:
        """Write `path` whole or not at all (each thread through its own temporary file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
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
        secrets: Callable[[str, str], dict[str, str]],
        *,
        log: Callable[[str], None] = lambda line: None,
    ) -> list[str]:
        """Re-create what the state file says ran here (after a restart or a killed worker): the
        same versions, replicas, gateway ports and revision history; secret values come from
        `secrets(environment, service)`, as they were never written down. Returns what could not
        be restored, one line each.
        """
        path = self.state_dir / "local-state.json"
        try:
            recorded = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            return [f"{path} is not valid JSON; nothing restored"]
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
                values = secrets(*key)
                spec = ServiceSpec.from_stored(spec_data, values)
                revisions = [
                    {
                        **{k: v for k, v in r.items() if k != "spec"},
                        "_spec": ServiceSpec.from_stored(r["spec"], values),
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
        self.write_state()
        return problems
