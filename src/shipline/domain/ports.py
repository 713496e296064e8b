"""Ports: the small interfaces the engine uses to reach the world. Adapters implement them."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from shipline.domain.events import RunEvent


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


class LogSink(Protocol):
    """Where a tool's output lines go."""

    def __call__(self, line: str) -> None: ...


@runtime_checkable
class DeployTarget(Protocol):
    """Where an environment's services run: desired state in, revisions and observations out.

    Fits processes on this machine (local) and Kubernetes Deployments alike: `apply` is a
    rollout that records a revision, `rollback` re-applies one, `status` is the observation.
    """

    def plan(self, spec: Any) -> dict[str, Any]:
        """What applying `spec` would change (preview); secret values never appear."""
        ...

    def apply(self, spec: Any, *, cause: str = "deploy", log: LogSink = ...) -> int:
        """Roll out `spec`; return the new revision number."""
        ...

    def status(self, environment: str, service: str) -> dict[str, Any]:
        """Observed version, replicas desired/ready/running, restarts, revision."""
        ...

    def history(self, environment: str, service: str) -> list[dict[str, Any]]:
        """Revisions, oldest first."""
        ...

    def rollback(self, environment: str, service: str, revision: int = 0, **kw: Any) -> int:
        """Re-apply `revision` (0: the previous); return the new revision number."""
        ...


@runtime_checkable
class MetricSource(Protocol):
    """Per-version samples for canary analysis (the gateway's counters, Prometheus, ...)."""

    def collect(self) -> None:
        """End the current interval (sources that keep history need not do anything)."""
        ...

    def sample(self, version: str, seconds: float) -> Any:
        """A `Sample` of `version` over the last interval of `seconds`."""
        ...
