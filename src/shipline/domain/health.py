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
    service: str = ""
    namespace: str | None = None  # where a cluster keeps it (hints name it)
    pod_problem: tuple[str, str] | None = None  # (pod, reason) of a pod not running well
    autoscaler: HealthCheck | None = None  # the cluster's own verdict, when it has one
    budget: HealthCheck | None = None
    version: str | None = None  # the stable version the target runs

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
        namespace: str | None = None,
        pod_problem: tuple[str, str] | None = None,
        autoscaler: HealthCheck | None = None,
        budget: HealthCheck | None = None,
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
            service=state.service,
            namespace=namespace,
            pod_problem=pod_problem,
            autoscaler=autoscaler,
            budget=budget,
            version=state.version,
        )


@dataclass(frozen=True)
class HealthCheck:
    """One check's result, why, and (when it failed or warns) what to look at."""

    name: str
    passed: bool
    reason: str
    hint: str | None = None
    warning: bool = False  # passed, but something is not as it should be


def troubleshooting(reason: str, service: str, namespace: str | None, pod: str = "POD") -> str:
    """The spec's troubleshooting steps for `reason` (a pod's waiting reason, or one of
    `no-endpoints`, `not-ready`, `hpa-no-metrics`, `timeout`), as commands to run."""
    ns = f" -n {namespace}" if namespace else ""
    match reason:
        case "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName":
            return (
                f"the image cannot be pulled: check that the tag exists in the registry, then"
                f" `kubectl describe pod {pod}{ns}` and the pull secret (`kubectl get secrets{ns}`)"
            )
        case "CrashLoopBackOff" | "restarting":
            return (
                f"the container keeps exiting: `kubectl logs --previous {pod}{ns}`, and check its"
                f" resources (`kubectl top pods{ns}`)"
            )
        case "no-endpoints":
            return (
                f"no ready pod backs the Service: compare `kubectl describe service {service}{ns}`"
                f" with `kubectl get pods{ns} --show-labels`, then"
                f" `kubectl get endpoints {service}{ns}`"
            )
        case "not-ready":
            return (
                f"the readiness probe does not pass: `kubectl describe pod {pod}{ns}` shows the"
                f" probe's failures; check the service's health path and port"
            )
        case "hpa-no-metrics":
            return (
                f"the autoscaler has no metrics and cannot scale: `kubectl describe hpa {service}"
                f"{ns}`; check the metrics server"
                ' (`kubectl get --raw "/apis/metrics.k8s.io/v1beta1/pods"`)'
            )
        case _:
            return (
                f"`kubectl rollout status deployment/{service}{ns}`, `kubectl get pods{ns} -o wide`"
                f" and `kubectl get events{ns} --sort-by=.lastTimestamp`"
            )


def verify_health(o: Observation) -> list[HealthCheck]:
    """The six checks, in the spec's order; a failed check says what to look at."""
    pod, problem = o.pod_problem or ("POD", "")
    running = o.running >= o.desired and o.ready >= o.desired
    unhealthy = o.restarts == 0 and o.crash_looping == 0 and not problem
    checks = [
        HealthCheck(
            "pod status",
            running,
            f"{o.ready}/{o.desired} ready, {o.running} running"
            + (f"; {pod}: {problem}" if problem else ""),
            None
            if running
            else troubleshooting(problem or "not-ready", o.service, o.namespace, pod),
        ),
        HealthCheck(
            "unhealthy pods",
            unhealthy,
            "no restarts"
            if unhealthy
            else f"{o.restarts} restart(s), {o.crash_looping} crash-looping"
            + (f"; {pod}: {problem}" if problem else ""),
            None
            if unhealthy
            else troubleshooting(problem or "restarting", o.service, o.namespace, pod),
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
            None
            if o.endpoint_ok is True
            else troubleshooting("no-endpoints", o.service, o.namespace),
        ),
        o.autoscaler
        or HealthCheck(
            "scaling",
            o.min_replicas <= o.desired <= o.max_replicas,
            f"{o.desired} replica(s), bounds {o.min_replicas}-{o.max_replicas}",
        ),
        o.budget
        or HealthCheck(
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
            None if not o.error_events else troubleshooting("events", o.service, o.namespace),
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
