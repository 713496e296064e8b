"""Which variable layers apply to one (environment, service) for one pipeline, in order.

Later wins: global groups → tier groups → environment groups and variables → stack groups →
service groups and variables → run parameters. Pure: it reads the configuration only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shipline.domain.models import (
    Config,
    Environment,
    PipelineKind,
    Service,
    VariableGroup,
    Variables,
)
from shipline.domain.variables import Definition, Layer
from shipline.errors import PermissionDenied


@dataclass(frozen=True)
class Scope:
    """What a resolution is for."""

    environment: Environment
    service: Service | None
    pipeline: PipelineKind


def _check_pipeline(config: Config, name: str, scope: Scope) -> None:
    group: VariableGroup = config.variable_groups[name]
    if group.pipelines is not None and scope.pipeline.value not in group.pipelines:
        allowed = ", ".join(group.pipelines) or "none"
        raise PermissionDenied(
            f"pipeline '{scope.pipeline.value}' may not use variable group '{name}'",
            hint=f"the group allows: {allowed}; add the pipeline to its 'pipelines' to grant it",
        )


def _group_layer(config: Config, name: str) -> Layer:
    group: VariableGroup = config.variable_groups[name]
    store = group.secret_store or config.default_secret_store
    defs = {
        var: Definition(
            value=spec.value,
            secret=spec.secret,
            store=store if spec.secret else None,
            ref=group.secret_ref(var, spec) if spec.secret else None,
            optional=spec.optional,
            output=spec.output,
            output_environment=spec.output_environment,
        )
        for var, spec in group.variables.items()
    }
    return Layer(name, defs)


def _inline_layer(source: str, variables: Variables) -> Layer:
    return Layer(
        source,
        {
            k: Definition(value=v.value, output=v.output, output_environment=v.output_environment)
            for k, v in variables.items()
        },
    )


def group_layer(config: Config, name: str) -> Layer:
    """The layer of variable group `name` (secrets as store references)."""
    return _group_layer(config, name)


def layer_cache(config: Config) -> dict[str, Layer]:
    """A `cache` for `layers` with every variable group's layer already built."""
    return {f"group {name}": _group_layer(config, name) for name in config.variable_groups}


def layers(
    config: Config,
    scope: Scope,
    params: Mapping[str, str],
    *,
    enforce_pipelines: bool = True,
    cache: dict[str, Layer] | None = None,
) -> list[Layer]:
    """The variable layers of `scope`, in resolution order. A group that does not allow the
    scope's pipeline is PermissionDenied (unless `enforce_pipelines` is False). `cache` keeps
    the layers built for groups and inline variables across calls (for many scopes at once)."""
    memo: dict[str, Layer] = {} if cache is None else cache

    def group(name: str) -> Layer:
        if enforce_pipelines:
            _check_pipeline(config, name, scope)
        if f"group {name}" not in memo:
            memo[f"group {name}"] = _group_layer(config, name)
        return memo[f"group {name}"]

    def inline(source: str, variables: Variables) -> Layer:
        if source not in memo:
            memo[source] = _inline_layer(source, variables)
        return memo[source]

    env = scope.environment
    names = [*config.global_variable_groups, *config.tiers[env.tier].variable_groups]
    names += env.variable_groups
    out = [group(n) for n in names]
    if env.variables:
        out.append(inline(f"environment {env.name}", env.variables))
    if scope.service is not None:
        service = scope.service
        out += [group(n) for n in config.stacks[service.stack].variable_groups]
        out += [group(n) for n in service.variable_groups]
        if service.variables:
            out.append(inline(f"service {service.name}", service.variables))
    if params:
        out.append(Layer("run parameters", {k: Definition(value=v) for k, v in params.items()}))
    return out
