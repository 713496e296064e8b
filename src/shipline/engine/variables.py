"""Resolve the variables of one (environment, service) for one pipeline, secrets included.

Order, later wins: global groups → tier groups → environment groups and variables → stack groups
→ service groups and variables → run parameters. Then `$(name)` expansion.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from shipline.domain.infra import output_reference
from shipline.domain.models import (
    Config,
    PipelineKind,
)
from shipline.domain.ports import SecretStore
from shipline.domain.scopes import Scope, group_layer, layers
from shipline.domain.variables import (
    ResolvedVariable,
    VariableCycleError,
    expand,
    merge_layers,
)
from shipline.errors import CheckFailed, ConfigError, NotFoundError, SecretMissing


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


Outputs = Callable[[str, str], Mapping[str, Any] | None]  # (stack, environment) -> record


def resolve(
    config: Config,
    scope: Scope,
    stores: Callable[[str], SecretStore],
    params: Mapping[str, str] | None = None,
    *,
    fetch_secrets: bool = True,
    outputs: Outputs | None = None,
) -> list[ResolvedVariable]:
    """Resolved, expanded variables sorted by name.

    Secret values are fetched from their stores (unless `fetch_secrets` is False); every missing
    one is reported together in one SecretMissing that names variables, groups, stores and keys.
    A variable that takes an infrastructure output gets it from `outputs` (the newest apply of
    that stack in the matching infrastructure environment); without `outputs`, its fallback.
    """
    merged = merge_layers(layers(config, scope, params or {}))
    if outputs is not None:
        env = scope.environment
        _fill_outputs(config, merged, outputs, [env.name, *env.aliases])
    return finish(merged, stores, scope.environment.name, fetch_secrets=fetch_secrets)


def resolve_groups(
    config: Config, groups: list[str], stores: Callable[[str], SecretStore], label: str
) -> list[ResolvedVariable]:
    """The variables of `groups` alone (later wins), secrets fetched: what an infrastructure
    run passes to Terraform."""
    return finish(merge_layers(group_layer(config, name) for name in groups), stores, label)


def finish(
    merged: dict[str, ResolvedVariable],
    stores: Callable[[str], SecretStore],
    label: str,
    *,
    fetch_secrets: bool = True,
) -> list[ResolvedVariable]:
    """Fetch the secrets of merged variables and expand `$(name)` references."""
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
            f"{len(missing)} secret(s) needed by environment '{label}' "
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


def _fill_outputs(
    config: Config, merged: dict[str, ResolvedVariable], outputs: Outputs, names: list[str]
) -> None:
    """Give each variable that takes an infrastructure output its recorded value."""
    from dataclasses import replace

    infra = config.infrastructure
    known = {env.name for env in infra.environments}
    for key, var in merged.items():
        if var.output is None:
            continue
        stack, output = output_reference(var.output, list(infra.stacks))
        chosen = var.output_environment or next((n for n in names if n in known), None)
        record = outputs(stack, chosen) if chosen else None
        found = (record or {}).get("outputs", {}).get(output)
        if found is not None and not found.get("sensitive"):
            value = found.get("value")
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            source = f"output {stack}.{output} of {chosen} (run {record['run_id']})"  # type: ignore[index]
            merged[key] = replace(var, value=text, source=source)
            continue
        why = (
            f"output '{output}' of stack {stack} is sensitive: shipline does not keep it"
            if found is not None
            else f"no apply of stack {stack} in {chosen} recorded output '{output}'"
            if chosen
            else f"no infrastructure environment matches {names[0]}"
        )
        if var.value is None:
            raise CheckFailed(
                f"variable '{var.name}' takes an infrastructure output: {why}",
                hint=f"shipline infra apply --env {chosen or 'ENV'} --stack {stack}, or give the"
                " variable a 'value' to use until then",
            )
        merged[key] = replace(var, source=f"{var.source} (until {stack}.{output} is applied)")


def _with_value(var: ResolvedVariable, value: str) -> ResolvedVariable:
    from dataclasses import replace

    return replace(var, value=value)
