"""The one place the engine meets adapters: deploy targets by kind, metric sources.

Target kinds come from the `shipline.targets` entry-point group (`local`, `memory`, `fake` ship
with shipline; a plugin adds its own), so no engine module names one. A runtime builds each
target once and keeps it for the life of the process.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from shipline.domain.models import CanaryMetrics, Config
from shipline.domain.ports import DeployTarget, MetricSource, TargetContext, TargetFactory
from shipline.errors import TargetError, UserError

GROUP = "shipline.targets"


def target_kinds() -> dict[str, EntryPoint]:
    """Every installed target kind, by name."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def require_target(config: Config, environment: str) -> str:
    """The kind of `environment`'s target; a UserError (exit 2) when none is installed for it,
    so that a run is refused when submitted, not after its approvals."""
    env = config.environment(environment)
    kind = config.targets[env.target].type
    kinds = target_kinds()
    if kind not in kinds:
        raise UserError(
            f"environment '{env.name}' deploys to target '{env.target}' of type '{kind}',"
            " which cannot run here: no such target type is installed",
            hint=f"installed target types: {', '.join(sorted(kinds)) or 'none'}",
        )
    return kind


def build_target(kind: str, state_dir: Path, settings: dict[str, str | None]) -> DeployTarget:
    """A new target of `kind` for the state folder."""
    found = target_kinds().get(kind)
    if found is None:
        raise UserError(f"target type '{kind}' is not installed")
    try:
        factory: TargetFactory = found.load()
    except (ImportError, AttributeError) as exc:
        raise TargetError(f"target type '{kind}' could not be loaded: {exc}") from exc
    return factory(TargetContext(kind, state_dir, settings))


def metric_source(
    metrics: CanaryMetrics, target_metrics: MetricSource, environment: str, service: str
) -> MetricSource:
    """Where a canary's samples come from: the target's own counters, or Prometheus."""
    if metrics.source == "prometheus" and metrics.url:
        from shipline.targets.local.metrics import PrometheusMetrics

        return PrometheusMetrics(metrics.url, {"environment": environment, "service": service})
    return target_metrics
