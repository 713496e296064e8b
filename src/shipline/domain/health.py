"""Post-deploy health verification: the spec's six checks, decided from an observation.

1 pod status (all replicas running), 2 unhealthy pods (none restarting or crash-looping),
3 service endpoints (the service answers through its endpoint), 4 scaling (replicas within the
autoscaler's bounds), 5 disruption budget (never fewer available than required during the
rollout), 6 recent events (no error events). Targets observe; this decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shipline.domain.deploy import ServiceState


@dataclass(frozen=True)
class HealthBounds:
    """What verification holds a service to: the autoscaler's bounds and the disruption budget
    (fewest replicas that must stay available while a rollout replaces existing ones)."""

    min_replicas: int = 1
    max_replicas: int = 20
    required_available: int = 0


@dataclass(frozen=True)
class Observation:
    """What a target saw of one service after a deploy."""

    desired: int
    running: int
    ready: int
    restarts: int = 0
    crash_looping: int = 0
    endpoint_ok: bool | None = None
    endpoint_detail: str = ""
    min_replicas: int = 1
    max_replicas: int = 1
    required_available: int = 0
    lowest_available: int | None = None  # during the rollout; None when not measured
    error_events: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        state: ServiceState,
        bounds: HealthBounds,
        *,
        endpoint_ok: bool | None,
        endpoint_detail: str,
        error_events: tuple[str, ...],
        lowest_available: int | None = None,
    ) -> Observation:
        """An observation from a target's `ServiceState`, the bounds verification holds it to,
        and what the target saw beyond the state (endpoints, events, the rollout's low point)."""
        return cls(
            desired=state.desired,
            running=state.running,
            ready=state.ready,
            restarts=state.restarts,
            crash_looping=state.crash_looping,
            endpoint_ok=endpoint_ok,
            endpoint_detail=endpoint_detail,
            min_replicas=bounds.min_replicas,
            max_replicas=bounds.max_replicas,
            required_available=bounds.required_available,
            lowest_available=lowest_available,
            error_events=error_events,
        )


@dataclass(frozen=True)
class HealthCheck:
    """One check's result and why."""

    name: str
    passed: bool
    reason: str


def verify_health(o: Observation) -> list[HealthCheck]:
    """The six checks, in the spec's order."""
    checks = [
        HealthCheck(
            "pod status",
            o.running >= o.desired and o.ready >= o.desired,
            f"{o.ready}/{o.desired} ready, {o.running} running",
        ),
        HealthCheck(
            "unhealthy pods",
            o.restarts == 0 and o.crash_looping == 0,
            "no restarts"
            if o.restarts == 0 and o.crash_looping == 0
            else f"{o.restarts} restart(s), {o.crash_looping} crash-looping",
        ),
        HealthCheck(
            "service endpoints",
            o.endpoint_ok is True,
            o.endpoint_detail
            or (
                "answers"
                if o.endpoint_ok
                else "not checked"
                if o.endpoint_ok is None
                else "does not answer"
            ),
        ),
        HealthCheck(
            "scaling",
            o.min_replicas <= o.desired <= o.max_replicas,
            f"{o.desired} replica(s), bounds {o.min_replicas}-{o.max_replicas}",
        ),
        HealthCheck(
            "disruption budget",
            o.lowest_available is None or o.lowest_available >= o.required_available,
            "not measured"
            if o.lowest_available is None
            else f"at least {o.lowest_available} available (required {o.required_available})",
        ),
        HealthCheck(
            "recent events",
            not o.error_events,
            "no error events" if not o.error_events else "; ".join(o.error_events[:3]),
        ),
    ]
    return checks


def healthy(checks: list[HealthCheck]) -> bool:
    """True when every check passed."""
    return all(c.passed for c in checks)


def assess_status(ready: int | None, desired: int | None, *, live: bool) -> str:
    """One word for `status`: healthy, degraded, unknown, or stopped when nothing serves it."""
    if not live:
        return "stopped (no worker)"
    if ready is None or desired is None:
        return "unknown"
    return "healthy" if ready >= desired else "degraded"
