"""Deploy step actions: apply, verify, roll back, scale, restart, preview and stop services on an
environment's target, through the `DeployTarget` port (no target kind is named here).

The canary is not here: the engine drives it step by step (`engine/canary.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipline.domain.deploy import DeploySpec, Revision, ServiceState
from shipline.domain.health import HealthBounds, healthy, verify_health
from shipline.domain.models import TrafficRouting
from shipline.domain.ports import (
    DeployTarget,
    LogSink,
    OrderedApply,
    Restorable,
    ServiceControl,
)
from shipline.engine.actions import BEGIN_EARLY, BUILTIN, NOTE, StepContext
from shipline.engine.failpoints import failpoint
from shipline.engine.runtime import current
from shipline.errors import (
    AlreadyRunning,
    CheckFailed,
    NotFoundError,
    ShiplineError,
    TechnicalError,
    Withdrawn,
)


class TargetUnsupported(TechnicalError):
    """The environment's target cannot do what was asked (e.g. scale a target without replicas)."""

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
        v
        for v in resolve(
            ws.config, scope, ws.store, run_parameters or {}, outputs=current().store.infra_outputs
        )
        if v.value is not None
    ]
    secret_values = [str(v.value) for v in resolved if v.secret and v.value]
    secret = frozenset(
        env_name(v.name)
        for v in resolved
        if v.secret or any(value in str(v.value) for value in secret_values)
    )
    return {env_name(v.name): str(v.value) for v in resolved}, secret


def restore_targets(ws: Any, log: Any) -> list[str]:
    """Build the targets of `ws`'s environments in this worker and let those whose services live
    in the worker (local) re-create what ran before. Returns what could not be restored."""
    from shipline.engine.wiring import target_kinds

    rt = current()
    kinds = target_kinds()
    problems: list[str] = []
    chosen: dict[str, str] = {}  # target name -> an environment that uses it
    for environment in ws.config.environments:
        chosen.setdefault(environment.target, environment.name)
    for name, environment in sorted(chosen.items()):
        kind = ws.config.targets[name].type
        if kind not in kinds:
            continue
        try:
            target = rt.target(kind, ws.state_dir, ws.target_settings(environment))
        except AlreadyRunning:
            raise
        except ShiplineError as exc:  # one unreachable target does not keep the others down
            problems.append(f"target '{name}' ({kind}): {exc}")
            continue
        if isinstance(target, Restorable):

            def secrets(
                environment: str, service: str, parameters: Mapping[str, str]
            ) -> dict[str, str]:
                env, names = service_environment(ws, environment, service, dict(parameters))
                return {k: v for k, v in env.items() if k in names}

            problems += target.restore(secrets, log=log)
    return problems


def target_of(params: dict[str, Any]) -> DeployTarget:
    """The environment's target, built once per worker."""
    return current().target(
        str(params["target"]), Path(str(params["stateDir"])), params.get("targetSettings")
    )


def _control(params: dict[str, Any], what: str) -> ServiceControl:
    target = target_of(params)
    if not isinstance(target, ServiceControl):
        raise TargetUnsupported(f"target type '{params['target']}' cannot {what}")
    return target


class _Unseen:
    """`spec_of`'s default: the caller did not observe the service."""


_UNSEEN = _Unseen()


def spec_of(
    params: dict[str, Any],
    version: str | None = None,
    *,
    live: ServiceState | _Unseen | None = _UNSEEN,
) -> DeploySpec:
    """The desired state a deploy step asks for: resolved variables (secrets included, kept in
    memory only), replicas (a scaled count is kept across deploys, as Kubernetes does). `live`
    is the service as the caller just observed it (None: not deployed yet); observed here when
    not given."""
    variables, secret_names = _variables(params)
    env = {**variables, **{k: str(v) for k, v in params.get("extraEnv", {}).items()}}
    if isinstance(live, _Unseen):
        live = _live(target_of(params), params)
    if live is not None:
        # A scaled count is kept, within the tier's bounds (an override lasts until the next
        # deploy, as an autoscaler would bring it back).
        low, high = int(params.get("minReplicas", 1)), int(params.get("maxReplicas", 20))
        replicas = min(max(live.desired, low), high)
    else:
        replicas = int(params.get("replicas", 1))
    strategy = params.get("strategy") or {}
    rolling = strategy.get("type", "rolling") == "rolling"
    routing = strategy.get("trafficRouting")
    router = (
        TrafficRouting.model_validate(routing).router(str(params["service"])) if routing else None
    )
    return DeploySpec(
        str(params["environment"]),
        str(params["service"]),
        version or str(params["version"]),
        replicas=replicas,
        health_path=str(params.get("healthPath", "/health")),
        env=env,
        command=params.get("command"),
        workdir=params.get("workdir"),
        secret_names=secret_names,
        namespace=params.get("namespace"),
        image=params.get("image"),
        max_surge=int(strategy.get("maxSurge", 1)) if rolling else 1,
        max_unavailable=int(strategy.get("maxUnavailable", 0)) if rolling else 0,
        progress_deadline=params.get("progressDeadline"),
        router=router,
        digest=params.get("digest"),
        parameters={str(k): str(v) for k, v in params.get("runParameters", {}).items()},
        cpu_request=params.get("cpuRequest"),
        memory_request=params.get("memoryRequest"),
        cpu_target=params.get("cpuTargetUtilization"),
    )


def remember_revision(run_id: int, params: dict[str, Any], made: Revision | None = None) -> None:
    """Record the target's newest revision of the step's service, with who asked and the run:
    `made`, the revision the step's own change just made, or else the target's newest one."""
    from shipline.engine.history import remember

    rt = current()
    remember(
        rt.store,
        target_of(params),
        str(params["environment"]),
        str(params["service"]),
        by=rt.store.requested_by(run_id),
        run=run_id,
        made=made,
    )


def _live(target: DeployTarget, params: dict[str, Any]) -> ServiceState | None:
    """The service as the target runs it now (None before its first deploy)."""
    try:
        return target.observe(str(params["environment"]), str(params["service"]))
    except NotFoundError:
        return None


def _revision(target: DeployTarget, params: dict[str, Any]) -> int:
    live = _live(target, params)
    return live.revision if live is not None else 0


def own_change(
    target: DeployTarget, params: dict[str, Any], change: str, log: LogSink
) -> int | None:
    """When the service's newest revision was made by `change` (this step, before its worker
    stopped and the step ran again): the revision before it (0: none, it was the first deploy),
    said in the step's log. What the step's outputs must say, so that a failed run's rollback
    undoes it instead of taking the service for one that was in sync before the run."""
    history = target.history(str(params["environment"]), str(params["service"]))
    if not history or history[-1].change != change:
        return None
    mine = history[-1].number
    log(f"{params['service']} {params['version']}: applied by this step before its worker "
        f"stopped (revision {mine})")  # fmt: skip
    return max((r.number for r in history if r.number < mine), default=0)


def change_key(ctx: StepContext) -> str:
    """The idempotency key of a step's effect on a target: a step that runs again after a crash
    finds its change already recorded and does not make it twice."""
    return ctx.idempotency_key


def deploy(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Roll out the service's new version; a deploy already in sync does nothing (unless forced)."""
    service, version = str(params["service"]), str(params["version"])
    ws = current().workspace
    if ws is not None and ws.changed_on_disk():
        ctx.log(
            f"warning: {ws.config_path.name} changed since this worker started; this deploy "
            "uses the configuration the worker loaded (variables, targets): restart the "
            "worker to apply the change"
        )
    target = target_of(params)
    # A rolling deploy's step begins while the service before it rolls out (`BEGIN_EARLY`;
    # its stage holds the locks of all its services: nothing else changes this one meanwhile).
    live = _live(target, params)
    spec = spec_of(params, live=live)
    before = live.revision if live is not None else 0
    # A service not deployed yet is never in sync: nothing to compare it with (on Kubernetes a
    # plan is a server-side dry run of every object; the apply itself validates them).
    if live is not None and not params.get("force") and target.plan(spec).in_sync:
        replaced = own_change(target, params, change_key(ctx), ctx.log)
        _after_behind(ctx)  # in sync, yet not done before the service before it
        ctx.hand_on()  # nothing more to change: the next service may begin
        if replaced is not None:
            remember_revision(ctx.run_id, params)
            return {service: version, f"{service}.previousRevision": replaced}
        ctx.log(f"{service} {version}: in sync, nothing to do (--force redeploys)")
        remember_revision(ctx.run_id, params)  # in case a crash came between apply and this
        return {service: version, f"{service}.previousRevision": before, f"{service}.inSync": True,
                NOTE: "in sync, nothing to do"}  # fmt: skip
    cause = str(params.get("cause", "deploy"))
    if ctx.behind is not None and isinstance(target, OrderedApply):
        ctx.acting()  # queued at the target: it starts once the service before is rolled out
        number = target.apply_after(ctx.behind.change, spec, cause=cause, log=ctx.log,
                                    change=change_key(ctx))  # fmt: skip
    else:
        _after_behind(ctx)
        ctx.acting()  # the rollout: the service before this one is written down meanwhile
        number = target.apply(spec, cause=cause, log=ctx.log, change=change_key(ctx))
    failpoint("deploy-applied", change_key(ctx))
    ctx.hand_on()  # rolled out: the next service begins while this one's revision is recorded
    # the revision this change made, as the target's history keeps it (one lock per service and
    # environment: nothing else changed it in between)
    remember_revision(ctx.run_id, params, Revision(number, spec.version, spec.replicas, "", cause))
    return {service: version, f"{service}.previousRevision": before}


def _after_behind(ctx: StepContext) -> None:
    """Wait for the step this one is behind to make its effect; `Withdrawn` when it did not."""
    if ctx.behind is not None and not ctx.behind.wait():
        raise Withdrawn(f"not started: the step before it ({ctx.behind.change}) did not succeed")


def _bounds(params: dict[str, Any]) -> HealthBounds:
    return HealthBounds(
        min_replicas=int(params.get("minReplicas", 1)),
        max_replicas=int(params.get("maxReplicas", 20)),
        required_available=int(params.get("requiredAvailable", 0)),
    )


def verify(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """The spec's six health checks after a deploy."""
    service = str(params["service"])
    observation = _control(params, "verify health").health(
        str(params["environment"]), service, _bounds(params)
    )
    running = observation.version
    if running is None:  # a target that does not say it in its observation
        running = target_of(params).observe(str(params["environment"]), service).version
    if running != str(params["version"]):
        raise CheckFailed(f"{service} is at {running}, expected {params['version']}")
    checks = verify_health(observation)
    for check in checks:
        verdict = "FAIL" if not check.passed else "warn" if check.warning else "pass"
        ctx.log(f"{verdict} {check.name}: {check.reason}")
        if check.hint and (check.warning or not check.passed):
            ctx.log(f"     hint: {check.hint}")
    if not healthy(checks):
        failed = [c for c in checks if not c.passed]
        raise CheckFailed(
            f"{service} is not healthy: " + "; ".join(f"{c.name}: {c.reason}" for c in failed),
            hint=failed[0].hint,
        )
    return {f"{service}.verified": True}


def rollback(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Roll back to `revision` (0: the previous), or undo a deploy that failed (`afterFailure`):
    only services not verified healthy are undone; a failed first deploy is removed."""
    service, environment = str(params["service"]), str(params["environment"])
    target = target_of(params)
    if params.get("afterFailure"):
        # Stage names: a promotion names each environment's stages ("qa:deploy", ...).
        names = {"deploy": "deploy", "verify": "verify", **params.get("stageNames", {})}
        tested = ctx.inputs.get(names.get("tests", "")) or {}
        gates_failed = any(not tested.get(f"{g}.passed") for g in params.get("gates", []))
        if (ctx.inputs.get(names["verify"]) or {}).get(f"{service}.verified") and not gates_failed:
            ctx.log(f"{service}: verified healthy; left as it is")
            return {}
        deployed = ctx.inputs.get(names["deploy"]) or {}
        if deployed.get(f"{service}.inSync"):
            ctx.log(f"{service}: was already in sync; nothing to undo")
            return {}
        previous = int(deployed.get(f"{service}.previousRevision", -1))
        now = _revision(target, params)
        if previous == 0 and now > 0:
            _control(params, "remove a service").stop(environment, service)
            ctx.log(f"{service}: first deploy failed; removed")
            return {service: "removed"}
        if previous < 1 or now <= previous:
            ctx.log(f"{service}: still at revision {now}; nothing to roll back")
            return {}
        revision = previous
    else:
        revision = int(params.get("revision", 0))
    done = target.rollback(environment, service, revision, log=ctx.log, change=change_key(ctx))
    remember_revision(ctx.run_id, params)
    ctx.log(f"{service}: rolled back (now revision {done})")
    return {service: f"revision {done}"}


def scale(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Change the replica count."""
    replicas = int(params["replicas"])
    _control(params, "scale").scale(
        str(params["environment"]), str(params["service"]), replicas, log=ctx.log,
        change=change_key(ctx),
    )  # fmt: skip
    remember_revision(ctx.run_id, params)
    return {str(params["service"]): f"{replicas} replicas"}


def restart(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Rolling restart."""
    _control(params, "restart").restart(
        str(params["environment"]), str(params["service"]), log=ctx.log, change=change_key(ctx)
    )
    remember_revision(ctx.run_id, params)
    return {str(params["service"]): "restarted"}


def preview(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """What a deploy would change (variable names only; values never)."""
    plan = target_of(params).plan(spec_of(params))
    if plan.in_sync:
        ctx.log(f"{params['service']}: in sync")
    for key, change in plan.changes.items():
        ctx.log(f"{params['service']}: {key}: {change}")
    if plan.variables_changed:
        ctx.log(f"{params['service']}: values changed: {', '.join(plan.variables_changed)}")
    for field in plan.fields:
        where = f"{field.object} {field.path}".rstrip()
        ctx.log(f"{params['service']}: {where}: {field.before!r} -> {field.after!r}")
    return {str(params["service"]): plan.as_dict()}


def down(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Stop every service of the environment on its target."""
    stopped = _control(params, "stop services").stop(str(params["environment"]))
    ctx.log(f"stopped {len(stopped)} service(s): {', '.join(stopped)}")
    return {"stopped": stopped}


BEGIN_EARLY.add(deploy)
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
