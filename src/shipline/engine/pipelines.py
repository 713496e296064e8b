"""Build the pipelines that the CLI's actions run, from the configuration.

deploy: validate → deploy (business hours, approvals, one lock per (environment, service),
one step per service on the environment's target) → verify.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipline.domain.identity import canonical_identity
from shipline.domain.models import CanaryStrategy, Config, Environment
from shipline.domain.pipeline import PipelineSpec
from shipline.errors import NotFoundError, UserError


def pick_services(config: Config, services: str) -> list[str]:
    """'all' or a comma-separated list of known service names."""
    names = [s.name for s in config.services]
    if services.strip() == "all":
        return names
    chosen = [s.strip() for s in services.split(",") if s.strip()]
    if not chosen:
        raise UserError("no services given", hint="--services all, or --services a,b")
    unknown = [s for s in chosen if s not in names]
    if unknown:
        raise NotFoundError(
            f"unknown service(s): {', '.join(unknown)}", hint="see `shipline services list`"
        )
    return chosen


def find_environment(config: Config, name: str) -> Environment:
    """The environment called or aliased `name`."""
    try:
        return config.environment(name)
    except KeyError:
        raise NotFoundError(
            f"unknown environment '{name}'", hint=f"known: {', '.join(config.ladder)}"
        ) from None


def approvers(config: Config) -> dict[str, list[str]]:
    """Every approver group's members, as a run keeps them (canonical names, as votes are)."""
    return {
        name: [canonical_identity(m) for m in group.members]
        for name, group in config.approver_groups.items()
    }


def target_settings(config: Config, env: Environment, root: str | Path) -> dict[str, str | None]:
    """The settings `env`'s target is built with: its configuration, with the kubeconfig path
    made absolute against the project folder `root` and the project folder itself (where an
    overlay named by `manifests` is found)."""
    settings = config.targets[env.target].settings()
    kubeconfig = settings.get("kubeconfig")
    if kubeconfig:
        settings["kubeconfig"] = str(Path(root, Path(kubeconfig).expanduser()))
    settings["project"] = str(Path(root).resolve())
    return settings


def _service_params(
    config: Config,
    env: Environment,
    service: str,
    where: tuple[str, str],
    settings: dict[str, str | None],
) -> dict[str, Any]:
    """A service's step parameters in `env`: `where` (state folder, project folder), `settings`
    (the environment's `target_settings`, worked out once for all its services)."""
    state_dir, root = where
    target = config.targets[env.target]
    svc = config.service(service)
    tier = config.tiers[env.tier].resources
    start = (
        {"command": list(svc.start.command),
         "workdir": str(Path(root, svc.start.workdir or svc.context or f"services/{service}"))}
        if svc.start
        else {}
    )  # fmt: skip
    return {
        **start,
        "target": target.type,
        "targetSettings": dict(settings),
        "environment": env.name,
        "namespace": env.namespace,
        "stateDir": state_dir,
        "service": service,
        "healthPath": config.service_health_path(svc),
        "progressDeadline": env.checks.progress_deadline_seconds,
        "replicas": tier.min_replicas or 1,
        "minReplicas": tier.min_replicas or 1,
        "maxReplicas": tier.max_replicas,
        "cpuRequest": tier.cpu_request,
        "memoryRequest": tier.memory_request,
        "cpuTargetUtilization": tier.cpu_target_utilization,
        "requiredAvailable": max(0, (tier.min_replicas or 1) - 1)
        if tier.pod_disruption_budget
        else 0,
    }


def _steps(
    action: str,
    config: Config,
    env: Environment,
    services: list[str],
    where: tuple[str, str],
    **extra: Any,
) -> list[dict[str, Any]]:
    settings = target_settings(config, env, where[1])
    return [
        {
            "name": service,
            "action": action,
            "params": {**_service_params(config, env, service, where, settings), **extra},
        }
        for service in services
    ]


def deploy_pipeline(
    config: Config,
    env: Environment,
    services: list[str],
    tag: str | dict[str, str],
    state_dir: str,
    run_parameters: dict[str, str] | None = None,
    *,
    root: str,
    force: bool = False,
    tests: bool = True,
    digests: dict[str, str] | None = None,
) -> PipelineSpec:
    """validate → deploy (window, approvals, locks; the environment's strategy) → verify → the
    environment's test gates, and a rollback stage that runs only when one of them failed
    ("rollback is automatic"). `tag` is one version for every service, or one per service (a
    release)."""
    versions = tag if isinstance(tag, dict) else dict.fromkeys(services, tag)
    stages = _environment_stages(
        config, env, services, versions, (state_dir, root), prefix="", after=["validate"],
        run_parameters=run_parameters, force=force, tests=tests, digests=digests or {},
    )  # fmt: skip
    return PipelineSpec.model_validate(
        {"kind": "deploy", "stages": [_validate_stage(services, versions), *stages]}
    )


def promote_pipeline(
    config: Config,
    source: Environment,
    targets: list[Environment],
    versions: dict[str, str],
    state_dir: str,
    *,
    root: str,
    tests: bool = True,
    canary: bool = False,
    digests: dict[str, str] | None = None,
) -> PipelineSpec:
    """One run up the ladder: for each environment in order, its gates, deploy (its strategy;
    a canary where configured or asked), verification, test gates and, when one of them failed,
    its rollback; the next environment starts only after the one below succeeded."""
    services = sorted(versions)
    stages: list[dict[str, Any]] = [_validate_stage(services, versions, source=source.name)]
    after = ["validate"]
    for env in targets:
        chosen = env
        if canary and not isinstance(env.strategy, CanaryStrategy):
            chosen = env.model_copy(update={"strategy": CanaryStrategy()})
        found = _environment_stages(
            config, chosen, services, versions, (state_dir, root), prefix=f"{env.name}:",
            after=after, run_parameters=None, force=False, tests=tests, digests=digests or {},
        )  # fmt: skip
        stages += found
        after = [s["name"] for s in found if s.get("condition") != "failed"][-1:]
    return PipelineSpec.model_validate({"kind": "promote", "stages": stages})


def _validate_stage(
    services: list[str], versions: dict[str, str], source: str | None = None
) -> dict[str, Any]:
    tags = sorted(set(versions.values()))
    outputs: dict[str, Any] = {
        "services": services,
        "version": tags[0] if len(tags) == 1 else None,
        "versions": versions,
    }
    if source:
        outputs["from"] = source
    return {
        "name": "validate",
        "steps": [{"name": "plan", "action": "noop", "params": {"outputs": outputs}}],
    }


VERIFY_AT_ONCE = 10  # services whose health one verify stage checks at the same time


def _environment_stages(
    config: Config,
    env: Environment,
    services: list[str],
    versions: dict[str, str],
    where: tuple[str, str],
    *,
    prefix: str,
    after: list[str],
    run_parameters: dict[str, str] | None,
    force: bool,
    tests: bool,
    digests: dict[str, str],
) -> list[dict[str, Any]]:
    strategy = env.strategy.model_dump(mode="json", by_alias=True)
    kind = "canary" if strategy.get("type") == "canary" else "action"
    # several services at once: rolled, or each in a canary of its own
    wide = env.strategy.max_parallel
    spread = min(wide, max(len(services), 1))

    def steps(action: str, **extra: Any) -> list[dict[str, Any]]:
        made = _steps(action, config, env, services, where, **extra)
        for step in made:
            if "version" in extra:
                step["params"]["version"] = versions[step["name"]]
                if step["name"] in digests:  # the pushed image itself, where a target pulls
                    step["params"]["digest"] = digests[step["name"]]
        return made

    deploy_stage: dict[str, Any] = {
        "name": f"{prefix}deploy",
        "dependsOn": after,
        "parallel": spread,
        "locks": [f"{env.name}/{service}" for service in services],
        "lockPolicy": env.checks.lock.value,
        "steps": [
            {**step, "retry": {"attempts": 1}, "kind": kind}
            for step in steps(
                "target.deploy",
                version="",
                strategy=strategy,
                runParameters=run_parameters or {},
                force=force,
            )
        ],
    }
    if env.approvals is not None:
        deploy_stage["approval"] = env.approvals.model_dump(mode="json")
    if env.checks.business_hours is not None:
        deploy_stage["window"] = env.checks.business_hours.model_dump(mode="json")
    stages = [deploy_stage]
    names = {"deploy": f"{prefix}deploy", "verify": f"{prefix}verify"}
    if env.checks.health:  # the spec's six health checks, unless the environment turns them off
        # Checking disturbs nothing: every service is checked at once (up to VERIFY_AT_ONCE),
        # whatever the strategy's maxParallel, which bounds how many services roll at once.
        # A rolling update's service is checked as soon as it rolled out, while the next one
        # rolls (`follows`); a canary's after the stage.
        verify: dict[str, Any] = {
            "name": f"{prefix}verify", "parallel": min(max(len(services), 1), VERIFY_AT_ONCE),
            "steps": steps("target.verify", version=""),
        }  # fmt: skip
        if kind == "action":
            verify["follows"] = deploy_stage["name"]
        stages.append(verify)
    if tests and env.tests:
        names["tests"] = f"{prefix}tests"
        stages.append({
            "name": f"{prefix}tests",
            "steps": [
                {
                    "name": gate.name,
                    "action": "tests.run",
                    "timeoutSeconds": gate.timeout_minutes * 60,
                    "params": {
                        "gate": gate.model_dump(mode="json", by_alias=True),
                        "target": config.targets[env.target].type,
                        "targetSettings": target_settings(config, env, where[1]),
                        "environment": env.name,
                        "stateDir": where[0],
                        "root": where[1],
                        "versions": versions,
                        "healthPaths": {
                            s: config.service_health_path(config.service(s)) for s in services
                        },
                    },
                }
                for gate in env.tests
            ],
        })  # fmt: skip
    undo = steps(
        "target.rollback",
        afterFailure=True,
        stageNames=names,
        gates=[g.name for g in env.tests] if "tests" in names else [],
    )
    stages.append(
        {
            "name": f"{prefix}rollback",
            "dependsOn": [s["name"] for s in stages],
            "condition": "failed",
            "parallel": spread,
            "steps": undo,
        }
    )
    # One run at a time per (environment, service), from its deploy through its verification,
    # gates and rollback: another run's deploy never lands between this one's deploy and verify.
    deploy_stage["holdLocksUntil"] = [s["name"] for s in stages[1:]]
    return stages


ACTIONS = {
    "rollback": "target.rollback",
    "scale": "target.scale",
    "restart": "target.restart",
    "preview": "target.preview",
}


def action_pipeline(
    config: Config,
    env: Environment,
    services: list[str],
    action: str,
    state_dir: str,
    *,
    root: str,
    **extra: Any,
) -> PipelineSpec:
    """One action (rollback, scale, restart, preview) on each service, under the same locks."""
    stage: dict[str, Any] = {
        "name": action,
        "steps": _steps(ACTIONS[action], config, env, services, (state_dir, root), **extra),
    }
    if action != "preview":
        stage["locks"] = [f"{env.name}/{service}" for service in services]
        stage["lockPolicy"] = env.checks.lock.value
    return PipelineSpec.model_validate({"kind": action, "stages": [stage]})


def down_pipeline(config: Config, env: Environment, state_dir: str, *, root: str) -> PipelineSpec:
    """Stop every service of `env` on its target."""
    target = config.targets[env.target]
    params = {
        "target": target.type,
        "targetSettings": target_settings(config, env, root),
        "environment": env.name,
        "stateDir": state_dir,
    }
    return PipelineSpec.model_validate(
        {
            "kind": "down",
            "stages": [
                {
                    "name": "down",
                    "steps": [{"name": "stop", "action": "target.down", "params": params}],
                }
            ],
        }
    )


def _stack_variables(config: Config, stack: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for group in config.stacks[stack].variable_groups:
        for name, spec in config.variable_groups[group].variables.items():
            if not spec.secret and spec.value is not None:
                values[name] = spec.value
    return values


def ci_pipeline(
    config: Config,
    *,
    repo: str,
    services: list[str],
    tag: str,
    push: bool,
    scan: bool,
    commit: str | None,
    ref: str | None,
    artifacts: str,
    manifest: str,
    cache: str | None = None,
    fresh_cache: bool = False,
) -> PipelineSpec:
    """Build each service (in parallel, `ci.concurrency` at a time), scan, write the manifest."""
    ci = config.ci
    if push and not ci.registry:
        raise UserError(
            "--push needs a registry", hint="set 'ci: {registry: HOST:PORT}' in the configuration"
        )
    steps = []
    for name in services:
        service = config.service(name)
        stack = config.stacks[service.stack]
        context = service.context or f"services/{name}"
        dockerfile = service.dockerfile or stack.dockerfile or f"{context}/Dockerfile"
        recipe = stack.build.model_dump(mode="json") if stack.build else {}
        variables = _stack_variables(config, service.stack)
        steps.append(
            {
                "name": name,
                "action": "ci.build",
                "params": {
                    "repo": repo,
                    "service": name,
                    "stack": service.stack,
                    "context": context,
                    "dockerfile": dockerfile,
                    "image": service.image or name,
                    "tag": tag,
                    "commit": commit,
                    "recipe": recipe,
                    "variables": variables,
                    "buildArgs": variables,
                    "builder": ci.builder,
                    "platforms": ci.platforms,
                    "push": push,
                    "registry": ci.registry,
                    "insecure": ci.insecure_registry,
                    "scan": scan,
                    "severity": ci.severity,
                    "failOn": ci.fail_on_severities,
                    "artifacts": artifacts,
                    "cacheDir": cache,
                    "freshCache": fresh_cache,
                },
            }
        )
    stages: list[dict[str, Any]] = []
    if scan:
        stages.append(
            {
                "name": "scan-repository",
                "steps": [
                    {
                        "name": "gitleaks",
                        "action": "ci.scan-repository",
                        "params": {
                            "repo": repo,
                            "artifacts": artifacts,
                            "failOnSecrets": ci.fail_on_secrets,
                        },
                    }
                ],
            }
        )
    stages.append({"name": "build", "dependsOn": [], "parallel": ci.concurrency, "steps": steps})
    stages.append(
        {
            "name": "manifest",
            "dependsOn": ["build"],
            "steps": [
                {
                    "name": "write",
                    "action": "ci.manifest",
                    "params": {
                        "path": manifest,
                        "commit": commit,
                        "ref": ref,
                        "tag": tag,
                        "push": push,
                    },
                }
            ],
        }
    )
    return PipelineSpec.model_validate({"kind": "ci", "stages": stages})
