"""How the local target's daemon and its clients talk: one JSON document a line over a UNIX
socket; the domain's dataclasses and shipline's errors cross it and come back as themselves."""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from shipline import errors
from shipline.domain.deploy import DeployPlan, DeploySpec, Revision, ServiceState
from shipline.domain.health import HealthBounds, Observation

TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (DeploySpec, ServiceState, Revision, DeployPlan, Observation, HealthBounds)
}


def encode(value: Any) -> Any:
    """A JSON-ready form of `value` (dataclasses tagged with their type)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__type__": type(value).__name__, **fields}
    if isinstance(value, frozenset | set | tuple | list):
        items = sorted(value) if isinstance(value, frozenset | set) else value
        return [encode(v) for v in items]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def decode(value: Any) -> Any:
    """What `encode` made, back as the objects it came from."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("__type__")
    if kind is None:
        return {k: decode(v) for k, v in value.items()}
    cls = TYPES[str(kind)]
    data: dict[str, Any] = {}
    for name, hint in _fields(str(kind)):
        if name not in value:  # a field newer than the other side's shipline: its default
            continue
        raw = decode(value[name])
        if raw is not None and "frozenset" in hint:
            raw = frozenset(raw)
        elif raw is not None and hint.startswith("tuple"):
            raw = tuple(raw)
        data[name] = raw
    return cls(**data)


@functools.cache
def _fields(kind: str) -> tuple[tuple[str, str], ...]:
    """Each field of dataclass `kind` with its type hint as text (read once per class)."""
    cls = TYPES[kind]
    hints = typing.get_type_hints(cls)
    return tuple((f.name, str(hints[f.name])) for f in dataclasses.fields(cls))


def error_message(exc: errors.ShiplineError) -> dict[str, Any]:
    """An error as it crosses the socket (its type, message and hint)."""
    return {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}


def raise_error(data: dict[str, Any]) -> typing.NoReturn:
    """Raise the error the daemon reported, as its own type when shipline knows it."""
    from shipline.targets.local.target import TargetBusy

    known: dict[str, type[errors.ShiplineError]] = {
        name: getattr(errors, name)
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), errors.ShiplineError)
        and name not in ("ConfigError", "ConfigErrors")
    }
    known["TargetBusy"] = TargetBusy
    cls = known.get(str(data.get("type")), errors.TargetError)
    raise cls(str(data.get("message")), hint=data.get("hint"))
