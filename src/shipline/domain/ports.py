"""Ports: the small interfaces the engine uses to reach the world. Adapters implement them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from shipline.domain.canary import Sample
from shipline.domain.deploy import DeployPlan, DeploySpec, Revision, ServiceState
from shipline.domain.events import RunEvent
from shipline.domain.health import HealthBounds, Observation


@runtime_checkable
class SecretStore(Protocol):
    """Holds secret values by name. Implementations never log or echo values."""

    def get(self, name: str) -> str | None:
        """The value stored under `name`, or None when there is none."""
        ...

    def set(self, name: str, value: str) -> None:
        """Store `value` under `name`, replacing any earlier value."""
        ...

    def delete(self, name: str) -> bool:
        """Remove `name`; False when it was not there."""
        ...

    def names(self) -> list[str]:
        """The stored names, sorted."""
        ...

    def name_problem(self, name: str) -> str | None:
        """Why the store cannot hold a secret called `name` (None: it can)."""
        ...


@runtime_checkable
class Notifier(Protocol):
    """Announces run events somewhere (Slack, a webhook). Raises NotifyError when it fails."""

    name: str

    def send(self, event: RunEvent) -> None:
        """Deliver one event once; retrying is the caller's business."""
        ...


@runtime_checkable
class ImageBuilder(Protocol):
    """Builds container images, pushes them, saves them as archives (buildah, podman, buildx)."""

    name: str

    def build(
        self,
        context: str,
        dockerfile: str,
        image: str,
        *,
        platforms: list[str],
        build_args: dict[str, str],
        log: LogSink,
    ) -> None:
        """Build `image` (a local name with tag) from `dockerfile` in `context`."""
        ...

    def push(self, image: str, destination: str, *, insecure: bool, log: LogSink) -> str:
        """Push to `destination` (registry/repo:tag); return the digest the registry reports."""
        ...

    def save(self, image: str, archive: str, *, log: LogSink) -> None:
        """Write `image` to a docker-archive tarball (for scanners)."""
        ...


LogSink = Callable[[str], None]  # where a tool's or a target's output lines go


@dataclass(frozen=True)
class TargetContext:
    """What a target is built with: the project's state folder, and its settings from the
    configuration's `targets:` entry (cluster, context, ...)."""

    kind: str
    state_dir: Path
    settings: Mapping[str, str | None] = field(default_factory=dict)


@runtime_checkable
class DeployTarget(Protocol):
    """Where an environment's services run: desired state in, revisions and observations out.

    Fits processes on this machine (local) and Kubernetes Deployments alike: `apply` is a
    rollout that records a revision, `rollback` re-applies one, `observe` is the observation.
    Targets are registered by kind under the `shipline.targets` entry-point group.
    """

    def plan(self, spec: DeploySpec) -> DeployPlan:
        """What applying `spec` would change (preview); secret values never appear."""
        ...

    def apply(
        self, spec: DeploySpec, *, cause: str, log: LogSink, change: str | None = None
    ) -> int:
        """Roll out `spec`; return the new revision number. A failed rollout leaves the
        previous version serving (and removes what a first deploy started).

        `change` is the caller's idempotency key (every mutating operation takes one): when a
        revision was already recorded under it, nothing is done and that revision is returned,
        so a step that runs again after a crash changes nothing twice."""
        ...

    def observe(self, environment: str, service: str) -> ServiceState:
        """What runs now; NotFoundError when the service is not deployed there."""
        ...

    def history(self, environment: str, service: str) -> list[Revision]:
        """Revisions, oldest first."""
        ...

    def rollback(
        self,
        environment: str,
        service: str,
        revision: int,
        *,
        log: LogSink,
        change: str | None = None,
    ) -> int:
        """Re-apply `revision` (0: the previous); return the new revision number."""
        ...


@runtime_checkable
class OrderedApply(Protocol):
    """A target that takes a rollout queued behind another one still under way and starts it
    the moment that one is made: in a stage that rolls its services out one after another, the
    next service starts without waiting for the engine to hear of the one before and answer."""

    def apply_after(
        self, after: str, spec: DeploySpec, *, cause: str, log: LogSink, change: str
    ) -> int:
        """`apply(spec, change=change)` once the change `after` (another apply's idempotency
        key) is made. `Withdrawn`, with nothing done, when that change failed or never came
        (`change` was already made: its revision, as `apply` returns it)."""
        ...


@runtime_checkable
class ServiceControl(Protocol):
    """Operations on what runs: scale, restart, stop, and health as verification reads it."""

    def scale(
        self,
        environment: str,
        service: str,
        replicas: int,
        *,
        log: LogSink,
        change: str | None = None,
    ) -> int:
        """Change the replica count; return the new revision number."""
        ...

    def restart(
        self, environment: str, service: str, *, log: LogSink, change: str | None = None
    ) -> int:
        """Replace every replica, one at a time; return the revision number."""
        ...

    def stop(self, environment: str, service: str | None = None) -> list[str]:
        """Stop `service` (None: every service) of `environment`; return the names stopped."""
        ...

    def health(self, environment: str, service: str, bounds: HealthBounds) -> Observation:
        """What the six post-deploy checks need to decide."""
        ...


@runtime_checkable
class CanaryRouter(Protocol):
    """What a target does for a canary; the engine owns the plan, bakes and analysis.

    `routers` names the traffic routers (`DeploySpec.router` kinds, e.g. "nginx",
    "gateway-api") it can set weights with, beside its own way; a canary asking for another is
    refused, never routed some other way."""

    routers: frozenset[str]

    def set_canary(self, spec: DeploySpec, weight: int, *, probe_rps: float, log: LogSink) -> bool:
        """Make `spec` the canary beside stable (starting it when it is not running: True) and
        send it `weight` % of the traffic."""
        ...

    def end_canary(self, spec: DeploySpec, *, promote: bool, log: LogSink) -> int:
        """Promote the canary `spec` (a rollout of it; returns the new revision) or remove it
        and route all traffic to stable (returns the current revision)."""
        ...

    def metrics(self, environment: str, service: str) -> MetricSource:
        """The target's own per-version counters for the service."""
        ...


@runtime_checkable
class MetricSource(Protocol):
    """Per-version samples for canary analysis (the gateway's counters, Prometheus, ...)."""

    def collect(self) -> None:
        """End the current interval (sources that keep history need not do anything)."""
        ...

    def sample(self, version: str, seconds: float) -> Sample:
        """`version`'s sample over the last interval of `seconds`."""
        ...


SecretValues = Callable[[str, str, Mapping[str, str]], dict[str, str]]


@runtime_checkable
class Restorable(Protocol):
    """A target whose services live in the worker's process and come back when it starts."""

    def restore(self, secrets: SecretValues, *, log: LogSink) -> list[str]:
        """Re-create what ran before; `secrets(environment, service, parameters)` gives the
        secret values (never written down) of a service deployed with those run parameters.
        Returns what could not be restored, one line each."""
        ...

    def write_state(self) -> None:
        """Record what runs now (for `status` in other processes, and for a successor)."""
        ...

    def close(self) -> None:
        """Stop what this process runs (on worker shutdown)."""
        ...


@runtime_checkable
class TargetView(Protocol):
    """What another process (the CLI, a web server) sees of a target that a worker runs."""

    def observe(self, environment: str, service: str) -> ServiceState:
        """The last recorded state; NotFoundError when the service is not deployed there."""
        ...

    def live(self) -> bool:
        """Whether a process serves the target now (False: recorded, but nothing runs)."""
        ...


@runtime_checkable
class ServiceLogs(Protocol):
    """A view that can read what a service's replicas wrote."""

    def log_files(self, environment: str, service: str) -> list[Path]:
        """The replicas' log files, oldest first (empty when there are none)."""
        ...


TargetFactory = Callable[[TargetContext], DeployTarget]
TargetViewFactory = Callable[[TargetContext], TargetView]


@dataclass(frozen=True)
class InfraWork:
    """One (stack, environment) for an infrastructure tool: the root module, the tool's own
    working data (one folder per stack and environment), the backend, the variable files and the
    process environment (TF_VAR_* values and backend credentials; secrets travel only here,
    never as arguments)."""

    root: Path
    data_dir: Path
    backend: str = "local"
    backend_config: Mapping[str, str] = field(default_factory=dict)
    var_files: tuple[Path, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    lock_timeout_seconds: int = 300


@runtime_checkable
class InfraTool(Protocol):
    """Plans and applies infrastructure (Terraform). A plan is a file that apply applies exactly,
    or refuses (StalePlan) when the state moved since it was made."""

    def version(self) -> str:
        """The tool's version, e.g. `1.11.4`."""
        ...

    def plan(
        self, work: InfraWork, out: Path, *, destroy: bool, log: LogSink
    ) -> Mapping[str, object]:
        """Initialise the backend, validate, and save a plan in `out`; its JSON representation
        (values included: the caller keeps only addresses)."""
        ...

    def apply(self, work: InfraWork, plan: Path, *, log: LogSink) -> None:
        """Apply the saved plan `plan` exactly."""
        ...

    def outputs(self, work: InfraWork, *, log: LogSink) -> dict[str, tuple[object, bool]]:
        """The state's outputs: name -> (value, sensitive)."""
        ...

    def unlock(self, work: InfraWork, lock_id: str, *, log: LogSink) -> None:
        """Release a state lock a dead run left behind."""
        ...
