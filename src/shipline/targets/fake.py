"""The in-memory target: desired state applied at once, revisions, canary weights, no processes.

It is the fake of the `DeployTarget`, `OrderedApply`, `ServiceControl` and `CanaryRouter` ports
and passes the same contract suite as the real targets. A spec can ask it to misbehave through
its variables: `FAKE_UNHEALTHY=1` fails the rollout, `FAKE_ERROR_RATE=0.5` makes its metrics
report that share of errors, `FAKE_REQUESTS=3` reports that few requests per interval (too
little to judge).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from shipline.domain.canary import Sample
from shipline.domain.deploy import DeployPlan, DeploySpec, Revision, ServiceState, plan_change
from shipline.domain.health import HealthBounds, Observation
from shipline.domain.ports import LogSink, MetricSource, TargetContext
from shipline.errors import CheckFailed, NotFoundError
from shipline.targets.ordering import Sequencer


def _quiet(line: str) -> None:
    """A log sink that drops lines."""


class FakeTarget:
    """Desired state kept in a dict (`MemoryTarget` keeps the same dict in a file)."""

    routers: frozenset[str] = frozenset()  # its own weights only

    def __init__(self) -> None:
        self._data: dict[str, Any] = {"services": {}}
        self._sequence = Sequencer(self._made_before)  # rollouts queued behind another

    @contextmanager
    def _state(self, environment: str, service: str | None = None) -> Iterator[dict[str, Any]]:
        """The state to read or change: `{"services": {"ENV/SERVICE": entry}}` holding at least
        `service` of `environment` (every service of it when None). Subclasses load and save
        that part around the change."""
        yield self._data

    @staticmethod
    def _key(environment: str, service: str) -> str:
        return f"{environment}/{service}"

    def _entry(self, data: dict[str, Any], environment: str, service: str) -> dict[str, Any]:
        entry: dict[str, Any] | None = data["services"].get(self._key(environment, service))
        if entry is None:
            raise NotFoundError(f"{service} is not deployed to {environment}")
        return entry

    @staticmethod
    def _spec(stored: dict[str, Any]) -> DeploySpec:
        return DeploySpec.from_stored(stored, {})

    # --- DeployTarget ----------------------------------------------------------------------

    def plan(self, spec: DeploySpec) -> DeployPlan:
        """What applying `spec` would change."""
        with self._state(spec.environment, spec.service) as data:
            entry = data["services"].get(self._key(spec.environment, spec.service))
            current = self._spec(entry["spec"]) if entry else None
            if current is not None and entry is not None:
                current = replace(current, env={**current.env, **entry.get("secretHashes", {})})
        return plan_change(current, replace(spec, env=_comparable(spec)))

    def apply(
        self,
        spec: DeploySpec,
        *,
        cause: str = "deploy",
        log: LogSink = _quiet,
        change: str | None = None,
    ) -> int:
        """Make `spec` the desired state at once; record a revision (once per `change`)."""
        with self._sequence.making(change):
            return self._apply(spec, cause, log, change)

    def apply_after(
        self, after: str, spec: DeploySpec, *, cause: str = "deploy", log: LogSink = _quiet,
        change: str,
    ) -> int:  # fmt: skip
        """`apply` once the change `after` is made; `Withdrawn` when it failed or never came."""
        with self._state(spec.environment, spec.service) as data:
            entry = data["services"].get(self._key(spec.environment, spec.service))
            made = entry is not None and _recorded(entry["revisions"], change) is not None
        if not made:
            self._sequence.wait_for(after)
        return self.apply(spec, cause=cause, log=log, change=change)

    def _made_before(self, change: str) -> bool:
        """Whether a revision this object holds was made by `change`."""
        return any(
            _recorded(entry["revisions"], change) is not None
            for entry in list(self._data["services"].values())
        )

    def _apply(self, spec: DeploySpec, cause: str, log: LogSink, change: str | None) -> int:
        if spec.env.get("FAKE_UNHEALTHY") == "1":
            raise CheckFailed(f"{spec.service} {spec.version}: new replica not healthy")
        with self._state(spec.environment, spec.service) as data:
            key = self._key(spec.environment, spec.service)
            entry = data["services"].setdefault(key, {"revisions": [], "canary": None})
            done = _recorded(entry["revisions"], change)
            if done is not None:
                log(f"{spec.service}: {cause} already applied (revision {done})")
                return done
            entry["spec"] = spec.stored()
            entry["secretHashes"] = _secret_hashes(spec)
            number = len(entry["revisions"]) + 1
            entry["revisions"].append(
                {
                    "number": number,
                    "at": datetime.now(UTC).isoformat(),
                    "cause": cause,
                    "spec": spec.stored(),
                    "change": change,
                }
            )
        log(f"{spec.service} {spec.version} applied ({spec.replicas} replica(s))")
        return number

    def observe(self, environment: str, service: str) -> ServiceState:
        """The desired state, as if it were running."""
        with self._state(environment, service) as data:
            entry = self._entry(data, environment, service)
            spec = self._spec(entry["spec"])
            canary = entry.get("canary")
        weights = {spec.version: 100}
        if canary:
            weight = int(canary["weight"])
            weights = {spec.version: 100 - weight, canary["spec"]["version"]: weight}
        return ServiceState(
            environment,
            service,
            spec.version,
            desired=spec.replicas,
            running=spec.replicas,
            ready=spec.replicas,
            revision=len(entry["revisions"]),
            weights=weights,
            canary=canary["spec"]["version"] if canary else None,
            address=f"fake://{environment}/{service}",
        )

    def history(self, environment: str, service: str) -> list[Revision]:
        """Revisions, oldest first."""
        with self._state(environment, service) as data:
            entry = self._entry(data, environment, service)
            return [
                Revision(
                    r["number"],
                    r["spec"]["version"],
                    r["spec"]["replicas"],
                    r["at"],
                    r["cause"],
                    tuple(sorted(r["spec"]["env"]) + list(r["spec"]["secretNames"])),
                    change=r.get("change"),
                )
                for r in entry["revisions"]
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
        """Re-apply `revision` (0: the one before the current)."""
        with self._state(environment, service) as data:
            revisions = self._entry(data, environment, service)["revisions"]
            done = _recorded(revisions, change)
            if done is not None:
                return done
            target = len(revisions) - 1 if revision == 0 else revision
            if not 1 <= target <= len(revisions):
                raise NotFoundError(
                    f"{service} in {environment} has no revision {target}",
                    hint=f"revisions 1..{len(revisions)}",
                )
            spec = self._spec(revisions[target - 1]["spec"])
        return self.apply(spec, cause=f"rollback to revision {target}", log=log, change=change)

    # --- ServiceControl --------------------------------------------------------------------

    def scale(
        self,
        environment: str,
        service: str,
        replicas: int,
        *,
        log: LogSink = _quiet,
        change: str | None = None,
    ) -> int:
        """A new revision with `replicas`."""
        with self._state(environment, service) as data:
            spec = self._spec(self._entry(data, environment, service)["spec"])
        return self.apply(
            replace(spec, replicas=replicas), cause=f"scale to {replicas}", log=log, change=change
        )

    def restart(
        self, environment: str, service: str, *, log: LogSink = _quiet, change: str | None = None
    ) -> int:
        """A new revision of the same spec."""
        with self._state(environment, service) as data:
            spec = self._spec(self._entry(data, environment, service)["spec"])
        return self.apply(spec, cause="restart", log=log, change=change)

    def stop(self, environment: str, service: str | None = None) -> list[str]:
        """Forget `service` (None: every service) of `environment`."""
        with self._state(environment, service) as data:
            names = [
                k
                for k in data["services"]
                if k.startswith(f"{environment}/") and service in (None, k.split("/", 1)[1])
            ]
            for key in names:
                del data["services"][key]
        return sorted(k.split("/", 1)[1] for k in names)

    def health(self, environment: str, service: str, bounds: HealthBounds) -> Observation:
        """Every replica ready and answering (the fake does not fail after a rollout)."""
        state = self.observe(environment, service)
        return Observation.of(
            state, bounds, endpoint_ok=True, endpoint_detail=f"{state.address} answered",
            error_events=(),
        )  # fmt: skip

    # --- CanaryRouter ----------------------------------------------------------------------

    def set_canary(
        self, spec: DeploySpec, weight: int, *, probe_rps: float = 0, log: LogSink = _quiet
    ) -> bool:
        """Record the canary and its weight."""
        if spec.env.get("FAKE_UNHEALTHY") == "1":
            raise CheckFailed(f"{spec.service} {spec.version}: canary replica not healthy")
        with self._state(spec.environment, spec.service) as data:
            entry = self._entry(data, spec.environment, spec.service)
            started = not entry.get("canary") or entry["canary"]["spec"]["version"] != spec.version
            entry["canary"] = {"spec": spec.stored(), "weight": weight}
        return started

    def end_canary(self, spec: DeploySpec, *, promote: bool, log: LogSink = _quiet) -> int:
        """Promote (apply the canary's spec) or drop the canary."""
        with self._state(spec.environment, spec.service) as data:
            entry = self._entry(data, spec.environment, spec.service)
            entry["canary"] = None
            current = len(entry["revisions"])
        if promote:
            return self.apply(spec, cause="canary promoted", log=log)
        return current

    def metrics(self, environment: str, service: str) -> MetricSource:
        """Samples made from each version's FAKE_* variables."""
        return _FakeMetrics(self, environment, service)

    def _version_env(self, environment: str, service: str, version: str) -> dict[str, str]:
        with self._state(environment, service) as data:
            entry = self._entry(data, environment, service)
            specs = [entry["spec"], *([entry["canary"]["spec"]] if entry.get("canary") else [])]
        for stored in specs:
            if stored["version"] == version:
                return dict(stored["env"])
        return {}


class _FakeMetrics:
    """A MetricSource over the fake's specs: FAKE_REQUESTS, FAKE_ERROR_RATE, FAKE_P95_MS."""

    def __init__(self, target: FakeTarget, environment: str, service: str) -> None:
        self._target, self._environment, self._service = target, environment, service

    def collect(self) -> None:
        """Nothing to end: samples are computed."""

    def sample(self, version: str, seconds: float) -> Sample:
        """What the version's variables say it would have answered."""
        env = self._target._version_env(self._environment, self._service, version)
        requests = int(env.get("FAKE_REQUESTS", "100"))
        errors = round(requests * float(env.get("FAKE_ERROR_RATE", "0")))
        p95 = env.get("FAKE_P95_MS")
        return Sample(requests, errors, p95_ms=float(p95) if p95 else 20.0)


def _secret_hashes(spec: DeploySpec) -> dict[str, str]:
    """Digests of secret values, so that a changed secret is a change, without keeping it."""
    return {
        k: "sha256:" + hashlib.sha256(spec.env[k].encode()).hexdigest()
        for k in spec.secret_names
        if k in spec.env
    }


def _comparable(spec: DeploySpec) -> dict[str, str]:
    """The spec's variables with secret values replaced by their digests."""
    return {**spec.env, **_secret_hashes(spec)}


def create(context: TargetContext) -> FakeTarget:
    """The `fake` target kind: one per process, nothing kept."""
    return FakeTarget()


def _recorded(revisions: list[dict[str, Any]], change: str | None) -> int | None:
    """The revision recorded under idempotency key `change`, if any."""
    if change is None:
        return None
    return next((int(r["number"]) for r in revisions if r.get("change") == change), None)
