"""Plain parameters without pydantic: a command line's strings, numbers and paths coerced the
way typer coerces them, without importing pydantic for it (about half of a command's start-up
when the command itself never needs pydantic: `--help`, `ci tag`). ADR 0014.

Typer builds a pydantic TypeAdapter for each parameter on first use; for a plain `str`,
`int`, `float`, `Path` or `list[str]` without range or path checks this module gives the
parameter a coercion of its own first. Anything else keeps typer's. The contract test
(`tests/unit/cli/test_params.py`) holds both to the same results and the same messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer._click import core as click_core
from typer._click import exceptions as click_errors
from typer._coercion import RuntimeParam  # typer's own extension point for coercion

_INTEGER = re.compile(r"^[+-]?[0-9]+(_[0-9]+)*(\.0*)?$")  # "1_000" and "7.0" too, as pydantic
_MESSAGES = {
    int: "Input should be a valid integer, unable to parse string as an integer",
    float: "Input should be a valid number, unable to parse string as a number",
    bool: "Input should be a valid boolean, unable to interpret input",
}
_PLAIN = (str, int, float, Path, bool)
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no", ""}
_PATH_CHECKS = ("exists", "writable", "resolve_path", "allow_dash", "path_type")


def _plain_scalar(value: Any, kind: type) -> Any:
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    if not isinstance(value, str):
        raise ValueError(kind)
    if kind is str:
        return value
    if kind is bool:
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ValueError(kind)
    if kind is Path:
        return Path(value)
    if kind is int:
        text = value.strip()
        if not _INTEGER.match(text):
            raise ValueError(kind)
        return int(text.split(".")[0])
    return float(value)  # as pydantic: "inf" and "nan" are numbers too


@dataclass(frozen=True)
class PlainParam(RuntimeParam):
    """A plain scalar, or a repeated option of plain strings."""

    kind: type = str
    repeated: bool = False

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            if self.repeated:
                items = value if isinstance(value, list | tuple) else [value]
                return [_plain_scalar(item, self.kind) for item in items]
            return _plain_scalar(value, self.kind)
        except ValueError:
            raise click_errors.BadParameter(
                _MESSAGES.get(self.kind, "Input is not valid"), ctx=ctx, param=param
            ) from None


def plain_param(descriptor: Any, multiple: bool) -> PlainParam | None:
    """This module's coercion for a parameter typer describes so, or None (typer's own)."""
    info = descriptor.parameter_info
    annotation = descriptor.annotation
    if descriptor.file_annotation is not None or descriptor.is_choice:
        return None
    if getattr(info, "parser", None) or getattr(info, "click_type", None):
        return None
    repeated = False
    if multiple and annotation == list[str]:
        annotation, repeated = str, True
    elif multiple or annotation not in _PLAIN:
        return None
    if annotation in (int, float) and (info.min is not None or info.max is not None):
        return None
    if annotation is Path and (
        any(getattr(info, name, None) for name in _PATH_CHECKS)
        or not info.file_okay
        or not info.dir_okay
    ):
        return None
    return PlainParam(
        parameter_info=info, annotation=descriptor.annotation, kind=annotation, repeated=repeated
    )


def lighten(command: Any) -> Any:
    """Give every plain parameter of `command` (and its subcommands) its plain coercion, the
    `--help` flag typer adds to each included."""
    params = list(getattr(command, "params", []))
    help_option = command.get_help_option(click_core.Context(command))
    for param in [*params, *([help_option] if help_option is not None else [])]:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or getattr(param, "_runtime_param", None) is not None:
            continue
        plain = plain_param(descriptor, bool(param.multiple))
        if plain is not None:
            param._runtime_param = plain
    for sub in getattr(command, "commands", {}).values():
        lighten(sub)
    return command
