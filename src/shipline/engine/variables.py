"""Resolve the variables of one (environment, service) for one pipeline, secrets included.

Order, later wins: global groups → tier groups → environment groups and variables → stack groups
→ service groups and variables → run parameters. Then `$(name)` expansion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shipline.domain.models import (
    Config,
    Environment,
    PipelineKind,
    Service,
    VariableGroup,
    Variables,
)
from shipline.domain.ports import SecretStore
from shipline.domain.variables import (
    Definition,
    Layer,
    ResolvedVariable,
    VariableCycleError,
    expand,
    merge_layers,
)
from shipline.errors import ConfigError, NotFoundError, PermissionDenied, SecretMissing


@dataclass(frozen=True)
class Scope:
    """What a resolution is for."""

    environment: Environment
    service: Service | None
    pipeline: PipelineKind


def find_scope(config: Config, env: str, service: str | None, pipeline: str) -> Scope:
    """Look up names given by a user; unknown names are NotFoundError with a hint."""
    try:
        environment = config.environment(env)
    except KeyError:
        names = ", ".join(config.ladder)
        raise NotFoundError(f"unknown environment '{env}'", hint=f"known: {names}") from None
    svc = None
    if service:
        try:
            svc = config.service(service)
        except KeyError:
            raise NotFoundError(
                f"unknown service '{service}'", hint="see `shipline services list`"
            ) from None
    try:
        kind = PipelineKind(pipeline)
    except ValueError:
        known = ", ".join(k.value for k in PipelineKind)
        raise NotFoundError(f"unknown pipeline '{pipeline}'", hint=f"known: {known}") from None
    return Scope(environment, svc, kind)


def _group_layer(config: Config, name: str, scope: Scope) -> Layer:
    group: VariableGroup = config.variable_groups[name]
    if group.pipelines is not None and scope.pipeline.value not in group.pipelines:
        allowed = ", ".join(group.pipelines) or "none"
        raise PermissionDenied(
            f"pipeline '{scope.pipeline.value}' may not use variable group '{name}'",
            hint=f"the group allows: {allowed}; add the pipeline to its 'pipelines' to grant it",
        )
    store = group.secret_store or config.default_secret_store
    defs = {
        var: Definition(
            value=spec.value,
            secret=spec.secret,
            store=store if spec.secret else None,
            ref=group.secret_ref(var, spec) if spec.secret else None,
            optional=spec.optional,
        )
        for var, spec in group.variables.items()
    }
    return Layer(name, defs)


def _inline_layer(source: str, variables: Variables) -> Layer:
    return Layer(source, {k: Definition(value=v.value) for k, v in variables.items()})


def layers(config: Config, scope: Scope, params: Mapping[str, str]) -> list[Layer]:
    """The variable layers of `scope`, in resolution order."""
    env = scope.environment
    names = list(config.global_variable_groups)
    names += config.tiers[env.tier].variable_groups
    out = [_group_layer(config, n, scope) for n in names]
    out += [_group_layer(config, n, scope) for n in env.variable_groups]
    if env.variables:
        out.append(_inline_layer(f"environment {env.name}", env.variables))
    if scope.service is not None:
        service = scope.service
        out += [
            _group_layer(config, n, scope) for n in config.stacks[service.stack].variable_groups
        ]
        out += [_group_layer(config, n, scope) for n in service.variable_groups]
        if service.variables:
            out.append(_inline_layer(f"service {service.name}", service.variables))
    if params:
        out.append(Layer("run parameters", {k: Definition(value=v) for k, v in params.items()}))
    return out


def resolve(
    config: Config,
    scope: Scope,
    stores: Callable[[str], SecretStore],
    params: Mapping[str, str] | None = None,
    *,
    fetch_secrets: bool = True,
) -> list[ResolvedVariable]:
    """Resolved, expanded variables sorted by name.

    Secret values are fetched from their stores (unless `fetch_secrets` is False); every missing
    one is reported together in one SecretMissing that names variables, groups, stores and keys.
    """
    merged = merge_layers(layers(config, scope, params or {}))
    missing: list[str] = []
    if fetch_secrets:
        opened: dict[str, SecretStore] = {}
        for key, var in merged.items():
            if not var.secret or var.store is None or var.ref is None:
                continue
            store = opened.get(var.store) or opened.setdefault(var.store, stores(var.store))
            value = store.get(var.ref)
            if value:
                merged[key] = _with_value(var, value)
            elif not var.optional:
                state = "empty" if value == "" else "missing"
                missing.append(
                    f"secret '{var.name}' of group '{var.source}' is {state} in store "
                    f"'{var.store}' (key {var.ref})"
                )
    if missing:
        raise SecretMissing(
            f"{len(missing)} secret(s) needed by environment '{scope.environment.name}' "
            "are not set:\n  " + "\n  ".join(missing),
            hint="set each with: shipline secrets set KEY --store STORE  (value on stdin)",
        )
    try:
        expanded = expand(merged)
    except VariableCycleError as exc:
        raise ConfigError(
            str(exc), hint="break the loop: one of them must not refer back"
        ) from None
    return sorted(expanded.values(), key=lambda v: v.name.casefold())


def _with_value(var: ResolvedVariable, value: str) -> ResolvedVariable:
    from dataclasses import replace

    return replace(var, value=value)
