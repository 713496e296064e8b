"""Build the pipelines that the CLI's actions run, from the configuration.

deploy: validate → deploy (business hours, approvals, one lock per (environment, service),
one step per service on the environment's target) → verify.
"""

from __future__ import annotations

from typing import Any

from shipline.domain.models import Config, Environment
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
    """Every approver group's members, as a run keeps them."""
    return {name: list(group.members) for name, group in config.approver_groups.items()}


def deploy_pipeline(
    config: Config, env: Environment, services: list[str], tag: str, state_dir: str
) -> PipelineSpec:
    """The deploy pipeline of `services` at `tag` to `env`."""
    target = config.targets[env.target]
    target_params: dict[str, Any] = {
        "target": target.type,
        "environment": env.name,
        "namespace": env.namespace,
        "stateDir": state_dir,
    }
    deploy_stage: dict[str, Any] = {
        "name": "deploy",
        "locks": [f"{env.name}/{service}" for service in services],
        "lockPolicy": env.checks.lock.value,
        "steps": [
            {
                "name": service,
                "action": "target.deploy",
                "params": {**target_params, "service": service, "version": tag},
                "retry": {"attempts": 2, "backoffSeconds": 1},
            }
            for service in services
        ],
    }
    if env.approvals is not None:
        deploy_stage["approval"] = env.approvals.model_dump(mode="json")
    if env.checks.business_hours is not None:
        deploy_stage["window"] = env.checks.business_hours.model_dump(mode="json")
    return PipelineSpec.model_validate(
        {
            "kind": "deploy",
            "stages": [
                {
                    "name": "validate",
                    "steps": [
                        {
                            "name": "plan",
                            "action": "noop",
                            "params": {"outputs": {"services": services, "version": tag}},
                        }
                    ],
                },
                deploy_stage,
                {
                    "name": "verify",
                    "steps": [
                        {
                            "name": service,
                            "action": "target.verify",
                            "params": {**target_params, "service": service, "version": tag},
                        }
                        for service in services
                    ],
                },
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
                        "params": {"repo": repo, "artifacts": artifacts},
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
