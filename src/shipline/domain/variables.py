"""Variable resolution: layered groups (later wins) and Azure DevOps-style `$(name)` expansion.

Names compare case-insensitively, as in Azure Pipelines; the spelling shown is the last definer's.
Pure: secret values are supplied by the caller, who fetched them from a store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


class VariableCycleError(ValueError):
    """Variables refer to each other in a loop."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__("variable reference cycle: " + " -> ".join(f"$({n})" for n in cycle))
        self.cycle = cycle


@dataclass(frozen=True)
class Layer:
    """One source of variables in resolution order: a group, the service, or run parameters."""

    source: str
    variables: Mapping[str, Definition]


@dataclass(frozen=True)
class Definition:
    """A variable as a layer defines it. Secret definitions carry a store key, not a value."""

    value: str | None = None
    secret: bool = False
    store: str | None = None
    ref: str | None = None
    optional: bool = False
    output: str | None = None  # an infrastructure output, STACK.OUTPUT (its value is the fallback)
    output_environment: str | None = None


@dataclass(frozen=True)
class ResolvedVariable:
    """A variable after resolution: its winning definition and where it came from."""

    name: str
    value: str | None
    source: str
    secret: bool = False
    store: str | None = None
    ref: str | None = None
    optional: bool = False
    overridden: tuple[str, ...] = ()
    output: str | None = None
    output_environment: str | None = None


def merge_layers(layers: Iterable[Layer]) -> dict[str, ResolvedVariable]:
    """Merge layers in order (later wins); keys are case-folded names."""
    merged: dict[str, ResolvedVariable] = {}
    for layer in layers:
        for name, definition in layer.variables.items():
            key = name.casefold()
            earlier = merged.get(key)
            overridden = (*earlier.overridden, earlier.source) if earlier else ()
            merged[key] = ResolvedVariable(
                name=name,
                value=definition.value,
                source=layer.source,
                secret=definition.secret,
                store=definition.store,
                ref=definition.ref,
                optional=definition.optional,
                overridden=overridden,
                output=definition.output,
                output_environment=definition.output_environment,
            )
    return merged


def expand(variables: Mapping[str, ResolvedVariable]) -> dict[str, ResolvedVariable]:
    """Expand `$(name)` references in every value.

    Unknown references stay as written. A value that takes in a secret becomes secret itself.
    Raises VariableCycleError when references loop.
    """
    done: dict[str, ResolvedVariable] = {}
    for key in variables:
        _expand_one(key, variables, done, [])
    return done


def _expand_one(
    key: str,
    variables: Mapping[str, ResolvedVariable],
    done: dict[str, ResolvedVariable],
    stack: list[str],
) -> ResolvedVariable:
    if key in done:
        return done[key]
    variable = variables[key]
    if key in stack:
        names = [variables[k].name for k in stack[stack.index(key) :]]
        raise VariableCycleError([*names, variable.name])
    if variable.value is None or "$(" not in variable.value:
        done[key] = variable
        return variable
    stack.append(key)
    secret = variable.secret

    def substitute(match: re.Match[str]) -> str:
        nonlocal secret
        ref = match.group(1).casefold()
        if ref not in variables:
            return match.group(0)
        target = _expand_one(ref, variables, done, stack)
        if target.value is None:
            return match.group(0)
        secret = secret or target.secret
        return target.value

    value = REFERENCE.sub(substitute, variable.value)
    stack.pop()
    result = replace(variable, value=value, secret=secret)
    done[key] = result
    return result
