"""Resolve the variables of one (environment, service) for one pipeline, secrets included.

Order, later wins: global groups → tier groups → environment groups and variables → stack groups
→ service groups and variables → run parameters. Then `$(name)` expansion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from shipline.domain.models import (
    Config,
    PipelineKind,
)
from shipline.domain.ports import SecretStore
from shipline.domain.scopes import Scope, layers
from shipline.domain.variables import (
    ResolvedVariable,
    VariableCycleError,
    expand,
    merge_layers,
)
from shipline.errors import ConfigError, NotFoundError, SecretMissing


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
