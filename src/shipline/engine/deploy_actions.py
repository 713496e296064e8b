"""Deploy step actions: apply, verify, roll back, scale, restart, preview and stop services on an
environment's target (`memory` fake, `local` processes). Other target types are not here yet."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from shipline.domain.health import healthy, verify_health
from shipline.domain.models import CanaryStrategy
from shipline.engine.actions import BUILTIN, StepContext
from shipline.engine.runtime import current
from shipline.errors import CheckFailed, TechnicalError


class TargetUnavailable(TechnicalError):
    """The environment's target type has no adapter yet."""

    terminal = True


def env_name(variable: str) -> str:
    """`mongodbUri` → `MONGODB_URI` (as in the .env files)."""
    return (
        re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", variable)
        .upper()
        .replace(".", "_")
        .replace("-", "_")
    )


def _variables(params: dict[str, Any]) -> tuple[dict[str, str], frozenset[str]]:
    """The service's resolved variables (secrets included) as process environment variables, and
    the names whose values are secret (or contain a secret) and so are never written down."""
    ws = current().workspace
    if ws is None or not params.get("resolveVariables", True):
        return {}, frozenset()
    run_parameters = {str(k): str(v) for k, v in params.get("runParameters", {}).items()}
    return service_environment(
        ws, str(params["environment"]), str(params["service"]), run_parameters
    )


def service_environment(
    ws: Any, environment: str, service: str, run_parameters: dict[str, str] | None = None
) -> tuple[dict[str, str], frozenset[str]]:
    """`_variables` for a workspace: environment variables and the secret ones' names."""
    from shipline.engine.variables import find_scope, resolve

    scope = find_scope(ws.config, environment, service, "deploy")
    resolved = [
        v for v in resolve(ws.config, scope, ws.store, run_parameters or {}) if v.value is not None
    ]
    secret_values = [str(v.value) for v in resolved if v.secret and v.value]
    secret = frozenset(
        env_name(v.name)
        for v in resolved
        if v.secret or any(value in str(v.value) for value in secret_values)
    )
    return {env_name(v.name): str(v.value) for v in resolved}, secret


def restore_local(ws: Any, state_dir: Path, log: Any) -> list[str]:
    """Re-create the local services a stopped or killed worker of `state_dir` ran; returns what
    could not be restored. Nothing happens when nothing was recorded."""
    if not (state_dir / "local-state.json").exists():
        return []
    target = current().local_target(state_dir)

    def secrets(environment: str, service: str) -> dict[str, str]:
        env, names = service_environment(ws, environment, service)
        return {k: v for k, v in env.items() if k in names}

    return list(target.restore(secrets, log=log))


def _local(params: dict[str, Any]) -> Any:
    return current().local_target(Path(str(params["stateDir"])))


def _memory(params: dict[str, Any]) -> Any:
    from shipline.targets.memory import MemoryTarget

    return MemoryTarget(Path(str(params["stateDir"])), str(params["environment"]))


def _kind(params: dict[str, Any]) -> str:
    kind = str(params.get("target"))
    if kind not in ("memory", "local"):
        raise TargetUnavailable(
            f"target type '{kind}' cannot deploy yet",
            hint="environments with a 'local' or 'memory' target can deploy today",
        )
    return kind


def _spec(params: dict[str, Any], version: str | None = None) -> Any:
    from shipline.targets.local.target import ServiceSpec

    variables, secret_names = _variables(params)
    env = {**variables, **{k: str(v) for k, v in params.get("extraEnv", {}).items()}}
    return ServiceSpec(
        str(params["environment"]),
        str(params["service"]),
        version or str(params["version"]),
        replicas=int(params.get("replicas", 1)),
        health_path=str(params.get("healthPath", "/health")),
        env=env,
        command=params.get("command"),
        secret_names=secret_names,
    )


def _metric_source(canary: CanaryStrategy, spec: Any) -> Any:
    """Prometheus (the gateways' series, selected by environment and service) or, by default,
    None: the target reads its gateway's own counters."""
    if canary.metrics.source != "prometheus" or not canary.metrics.url:
        return None
    from shipline.targets.local.metrics import PrometheusMetrics

    return PrometheusMetrics(
        canary.metrics.url, {"environment": spec.environment, "service": spec.service}
    )


def deploy(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Apply the service's new version with the environment's strategy."""
    service, version = str(params["service"]), str(params["version"])
    if _kind(params) == "memory":
        changed = _memory(params).apply(service, version)
        ctx.log(f"{service} -> {version}" + ("" if changed else " (already there)"))
        return {service: version}
    target = _local(params)
    try:
        before = target.status(str(params["environment"]), service)["revision"]
    except Exception:  # not deployed yet
        before = 0
    spec = _spec(params)
    strategy = params.get("strategy") or {"type": "rolling"}
    try:
        if strategy.get("type") == "canary":
            canary = CanaryStrategy.model_validate(strategy)
            target.canary(
                spec,
                canary.analysis,
                steps=list(canary.steps),
                bake_seconds=canary.bake_seconds,
                probe_rps=canary.metrics.probe_rps,
                metrics=_metric_source(canary, spec),
                log=ctx.log,
            )
        else:
            target.apply(spec, log=ctx.log)
    finally:
        target.write_state()
    return {service: version, f"{service}.previousRevision": before}


def verify(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """The spec's six health checks after a deploy."""
    service = str(params["service"])
    if _kind(params) == "memory":
        _memory(params).verify(service, str(params["version"]))
        return {}
    observation = _local(params).observe(
        str(params["environment"]),
        service,
        min_replicas=int(params.get("minReplicas", 1)),
        max_replicas=int(params.get("maxReplicas", 20)),
        required_available=int(params.get("requiredAvailable", 0)),
    )
    checks = verify_health(observation)
    for check in checks:
        ctx.log(f"{'pass' if check.passed else 'FAIL'} {check.name}: {check.reason}")
    if not healthy(checks):
        failed = "; ".join(f"{c.name}: {c.reason}" for c in checks if not c.passed)
        raise CheckFailed(f"{service} is not healthy: {failed}")
    return {}


def rollback(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Roll back to `revision` (0: the previous), or undo a deploy that failed (`afterFailure`)."""
    service, environment = str(params["service"]), str(params["environment"])
    if _kind(params) == "memory":
        ctx.log("the memory target keeps no history: nothing to roll back")
        return {}
    target = _local(params)
    if params.get("afterFailure"):
        previous = int((ctx.inputs.get("deploy") or {}).get(f"{service}.previousRevision", 0))
        try:
            now = target.status(environment, service)["revision"]
        except Exception:
            now = 0
        if previous < 1 or now <= previous:
            ctx.log(f"{service}: still at revision {now}; nothing to roll back")
            return {}
        revision = previous
    else:
        revision = int(params.get("revision", 0))
    try:
        done = target.rollback(environment, service, revision, log=ctx.log)
    finally:
        target.write_state()
    ctx.log(f"{service}: rolled back (now revision {done})")
    return {service: f"revision {done}"}


def _local_only(params: dict[str, Any], what: str) -> Any:
    if _kind(params) != "local":
        raise TargetUnavailable(f"{what} needs a target that runs processes ('local')")
    return _local(params)


def scale(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Change the replica count."""
    target = _local_only(params, "scale")
    try:
        target.scale(
            str(params["environment"]), str(params["service"]), int(params["replicas"]), log=ctx.log
        )
    finally:
        target.write_state()
    return {str(params["service"]): f"{params['replicas']} replicas"}


def restart(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Rolling restart."""
    target = _local_only(params, "restart")
    try:
        target.restart(str(params["environment"]), str(params["service"]), log=ctx.log)
    finally:
        target.write_state()
    return {str(params["service"]): "restarted"}


def preview(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """What a deploy would change (variable names only; values never)."""
    if _kind(params) == "memory":
        current_version = _memory(params).version(str(params["service"]))
        plan: dict[str, Any] = {
            "changes": {"version": {"from": current_version, "to": params["version"]}}
        }
    else:
        plan = _local(params).plan(_spec(params))
    for key, change in plan["changes"].items():
        ctx.log(f"{params['service']}: {key}: {change}")
    return {str(params["service"]): plan["changes"]}


def down(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Stop every service of the environment on this worker's local target."""
    target = _local_only(params, "down")
    stopped = target.down(str(params["environment"]))
    target.write_state()
    ctx.log(f"stopped {len(stopped)} service(s): {', '.join(stopped)}")
    return {"stopped": stopped}


BUILTIN.update(
    {
        "target.deploy": deploy,
        "target.verify": verify,
        "target.rollback": rollback,
        "target.scale": scale,
        "target.restart": restart,
        "target.preview": preview,
        "target.down": down,
    }
)
