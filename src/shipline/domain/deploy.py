"""What a deploy asks of a target, and what a target reports back. Pure data, no I/O.

`DeploySpec` is the desired state of one service in one environment; every target (local
processes, Kubernetes, the fakes) takes the same one. `ServiceState` is the observation,
`Revision` one entry of a service's history, `DeployPlan` what applying a spec would change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DeploySpec:
    """Desired state of one service in one environment."""

    environment: str
    service: str
    version: str
    replicas: int = 1
    health_path: str = "/health"
    env: dict[str, str] = field(default_factory=dict, repr=False)  # values may be secret
    command: list[str] | None = None  # None: the target's default workload
    workdir: str | None = None  # where `command` runs (targets that run processes)
    secret_names: frozenset[str] = frozenset()  # keys of `env` whose values are secret
    namespace: str | None = None
    image: str | None = None  # repository (without tag), where the target runs images
    max_surge: int = 1  # rolling update: replicas above `replicas` while it runs
    max_unavailable: int = 0  # rolling update: replicas below `replicas` while it runs
    progress_deadline: int | None = None  # seconds without progress before a rollout fails
    # How a canary's traffic share is set: (kind, object), e.g. ("nginx", "api"); None: the
    # target's own way (replica ratio, gateway weights).
    router: tuple[str, str] | None = None
    digest: str | None = None  # the image's digest (sha256:...), where the release has it
    # The run's `--set NAME=VALUE` parameters as submitted: secrets in them were turned into
    # `$(variable)` references at submission, so these are safe to keep and resolve again.
    parameters: dict[str, str] = field(default_factory=dict)
    # The tier's defaults, where a target runs containers: the CPU and memory a container
    # requests when it names none, and the CPU utilization an autoscaler without metrics keeps.
    cpu_request: str | None = None
    memory_request: str | None = None
    cpu_target: int | None = None

    def stored(self) -> dict[str, Any]:
        """What a successor needs to re-create the service: secret values left out."""
        return {
            "environment": self.environment,
            "service": self.service,
            "version": self.version,
            "replicas": self.replicas,
            "healthPath": self.health_path,
            "command": self.command,
            "workdir": self.workdir,
            "env": {k: v for k, v in self.env.items() if k not in self.secret_names},
            "secretNames": sorted(self.secret_names),
            "namespace": self.namespace,
            "image": self.image,
            "maxSurge": self.max_surge,
            "maxUnavailable": self.max_unavailable,
            "progressDeadline": self.progress_deadline,
            "digest": self.digest,
            "parameters": dict(self.parameters),
            "cpuRequest": self.cpu_request,
            "memoryRequest": self.memory_request,
            "cpuTarget": self.cpu_target,
        }

    @classmethod
    def from_stored(cls, data: dict[str, Any], secrets: dict[str, str]) -> DeploySpec:
        """The spec `stored()` wrote, its secret values taken from `secrets` (missing ones are
        left out: `missing_secrets` names them)."""
        names = frozenset(str(n) for n in data.get("secretNames", []))
        return cls(
            str(data["environment"]),
            str(data["service"]),
            str(data["version"]),
            replicas=int(data["replicas"]),
            health_path=str(data["healthPath"]),
            env={
                **{str(k): str(v) for k, v in data["env"].items()},
                **{n: secrets[n] for n in names if n in secrets},
            },
            command=data.get("command"),
            workdir=data.get("workdir"),
            secret_names=names,
            namespace=data.get("namespace"),
            image=data.get("image"),
            max_surge=int(data.get("maxSurge", 1)),
            max_unavailable=int(data.get("maxUnavailable", 0)),
            progress_deadline=data.get("progressDeadline"),
            digest=data.get("digest"),
            parameters={str(k): str(v) for k, v in (data.get("parameters") or {}).items()},
            cpu_request=data.get("cpuRequest"),
            memory_request=data.get("memoryRequest"),
            cpu_target=data.get("cpuTarget"),
        )

    def missing_secrets(self) -> list[str]:
        """Secret variables this spec names but holds no value for."""
        return sorted(self.secret_names - set(self.env))

    def public(self) -> dict[str, Any]:
        """The spec as revisions and previews show it: variable names, never values."""
        return {
            "version": self.version,
            "replicas": self.replicas,
            "healthPath": self.health_path,
            "variables": sorted(self.env),
            "command": self.command,
            **({"workdir": self.workdir} if self.workdir else {}),
        }

    def fingerprint(self) -> dict[str, Any]:
        """Everything that makes two specs the same deploy (values included, for comparison
        only: never shown, never stored)."""
        return {**self.public(), "env": dict(sorted(self.env.items()))}


@dataclass(frozen=True)
class Revision:
    """One applied spec in a service's history."""

    number: int
    version: str
    replicas: int
    at: str
    cause: str
    variables: tuple[str, ...] = ()
    by: str | None = None
    run: int | None = None
    # the idempotency key of the change that made it, where the target keeps it
    change: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The revision as tables and `--json` show it."""
        return {
            "revision": self.number,
            "version": self.version,
            "replicas": self.replicas,
            "at": self.at,
            "cause": self.cause,
            "variables": list(self.variables),
            "by": self.by,
            "run": self.run,
        }


@dataclass(frozen=True)
class ServiceState:
    """What a target observes of one service now."""

    environment: str
    service: str
    version: str
    desired: int
    running: int
    ready: int
    revision: int
    restarts: int = 0
    crash_looping: int = 0
    weights: dict[str, int] = field(default_factory=dict)
    canary: str | None = None  # the canary's version while one runs
    address: str | None = None  # where the service answers (a gateway URL, a Service name)
    events: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The state as `status --json` shows it."""
        return {
            "environment": self.environment,
            "service": self.service,
            "version": self.version,
            "desired": self.desired,
            "running": self.running,
            "ready": self.ready,
            "revision": self.revision,
            "restarts": self.restarts,
            "crashLooping": self.crash_looping,
            "weights": dict(self.weights),
            "canary": self.canary,
            "address": self.address,
            "events": list(self.events),
        }


@dataclass(frozen=True)
class FieldChange:
    """One field of one object that applying a spec would change (a cluster's dry run)."""

    object: str  # Kind/name
    path: str  # e.g. spec.template.spec.containers[api].image
    before: Any  # None: the object or field is new
    after: Any  # None: removed

    def as_dict(self) -> dict[str, Any]:
        """The change as previews show it."""
        return {"object": self.object, "path": self.path, "from": self.before, "to": self.after}


@dataclass(frozen=True)
class DeployPlan:
    """What applying a spec would change; `in_sync` when nothing would."""

    environment: str
    service: str
    create: bool
    changes: dict[str, dict[str, Any]]
    variables_changed: tuple[str, ...] = ()  # names whose values differ (values never shown)
    fields: tuple[FieldChange, ...] = ()  # field by field, where the target can tell
    # (name, from, to) of every variable that changes; secret values are "***"
    variables: tuple[tuple[str, str | None, str | None], ...] = ()

    @property
    def in_sync(self) -> bool:
        """Nothing to do: the live state already is the desired one (Argo CD's `Synced`)."""
        return not self.create and not self.changes and not self.variables_changed

    def as_dict(self) -> dict[str, Any]:
        """The plan as previews show it."""
        return {
            "environment": self.environment,
            "service": self.service,
            "create": self.create,
            "inSync": self.in_sync,
            "changes": self.changes,
            "variablesChanged": list(self.variables_changed),
            "fields": [f.as_dict() for f in self.fields],
            "variables": [{"name": n, "from": a, "to": b} for n, a, b in self.variables],
        }


def plan_change(current: DeploySpec | None, desired: DeploySpec) -> DeployPlan:
    """Compare the live spec with the desired one (pure; every target's `plan` uses it)."""
    before = current.public() if current else None
    changes = {
        k: {"from": (before or {}).get(k), "to": v}
        for k, v in desired.public().items()
        if before is None or before.get(k) != v
    }
    changed_vars: tuple[str, ...] = ()
    if current is not None:
        old, new = current.env, desired.env
        changed_vars = tuple(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))
        changed_vars = tuple(k for k in changed_vars if k in old and k in new)

    def shown(spec: DeploySpec | None, name: str) -> str | None:
        if spec is None or name not in spec.env:
            return None
        return "***" if name in spec.secret_names else spec.env[name]

    old_env = current.env if current else {}
    moved = sorted(
        k for k in set(old_env) | set(desired.env) if old_env.get(k) != desired.env.get(k)
    )
    variables = tuple((k, shown(current, k), shown(desired, k)) for k in moved)
    return DeployPlan(
        desired.environment, desired.service, current is None, changes, changed_vars,
        variables=variables,
    )  # fmt: skip


def field_changes(kind_name: str, before: Any, after: Any) -> list[FieldChange]:
    """The leaves that differ between two renderings of one object. Lists of named items
    (containers, env, ports) are compared item by item, keyed by name."""
    old, new = _leaves(before), _leaves(after)
    return [
        FieldChange(kind_name, path, old.get(path), new.get(path))
        for path in sorted(set(old) | set(new))
        if old.get(path) != new.get(path)
    ]


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_leaves(item, f"{path}.{key}" if path else str(key)))
        return out
    if (
        isinstance(value, list)
        and value
        and all(isinstance(i, dict) and "name" in i for i in value)
    ):
        out = {}
        for item in value:
            out.update(_leaves(item, f"{path}[{item['name']}]"))
        return out
    return {path: value}
