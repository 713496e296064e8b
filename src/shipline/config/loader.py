"""Load a configuration: YAML with positions → pydantic models → cross-reference checks.

Every problem is collected and raised at once as ConfigErrors, each at file:line:column.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shipline.config.source import PathKey, Source, load_source
from shipline.config.validate import check_references, check_unsupported
from shipline.domain.models import CPU_QUANTITY, MEMORY_QUANTITY, Config
from shipline.errors import ConfigError, ConfigErrors


def config_warnings(path: Path) -> tuple[Config, list[ConfigError]]:
    """The configuration at `path` and what in it nothing acts on (located warnings)."""
    source = load_source(path)
    config = load_config(path)
    return config, check_unsupported(config, source, root=path.parent)


def load_config(path: Path) -> Config:
    """Read, validate and cross-check the configuration at `path` and its includes."""
    return load_config_files(path)[0]


def load_config_files(path: Path) -> tuple[Config, list[Path]]:
    """The configuration at `path`, validated, and the files it was read from (`path` and its
    includes): what a cache of anything derived from it is keyed on."""
    source = load_source(path)
    try:
        config = Config.model_validate(source.data)
    except ValidationError as exc:
        raise ConfigErrors(schema_errors(exc, source)) from None
    problems = check_references(config, source, root=path.parent)
    if problems:
        raise ConfigErrors(problems)
    return config, list(source.files)


_KNOWN_KEYS: set[str] | None = None


def _known_keys() -> set[str]:
    global _KNOWN_KEYS  # noqa: PLW0603 - computed once from the schema
    if _KNOWN_KEYS is None:
        keys: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                props = node.get("properties")
                if isinstance(props, dict):
                    keys.update(props)
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(Config.model_json_schema(by_alias=True))
        _KNOWN_KEYS = keys
    return _KNOWN_KEYS


# Azure DevOps settings shipline does otherwise: what to write instead.
REPLACED = {
    "serviceConnection": "shipline reaches a cluster through kubeconfig: give the target the"
    " kubeconfig 'context:' of that cluster (and 'kubeconfig:' unless KUBECONFIG is set), and"
    " its 'cluster:' to check that context against",
}


def schema_errors(exc: ValidationError, source: Source) -> list[ConfigError]:
    """Turn pydantic's errors into located ConfigErrors with a hint each."""
    out: list[ConfigError] = []
    for error in exc.errors(include_url=False):
        loc: PathKey = tuple(error["loc"])
        kind = error["type"]
        field = next((str(p) for p in reversed(loc) if isinstance(p, str)), "value")
        hint: str | None = None
        if kind == "extra_forbidden":
            message = f"unknown key '{field}'"
            close = difflib.get_close_matches(field, sorted(_known_keys()), n=1)
            hint = REPLACED.get(field) or (
                f"did you mean '{close[0]}'?" if close else "remove it; see `shipline schema`"
            )
            location = source.locate(loc, key=True)
        elif kind == "missing":
            message = f"missing required key '{field}'"
            hint = f"add '{field}: ...' here"
            location = source.locate(loc[:-1])
        else:
            message = f"{_dotted(loc)}: {_clean(error['msg'])}"
            shown = "input" in error and not isinstance(error["input"], dict | list)
            if shown and kind != "value_error":
                message += f" (got {error['input']!r})"
            hint = _hint_for(kind, error.get("ctx") or {}, loc, error.get("input"))
            location = source.locate(loc)
        out.append(ConfigError(message, location=location, hint=hint))
    return out


def _dotted(loc: PathKey) -> str:
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part in {"rolling", "canary"} or "[" in part:
            continue
        else:
            parts.append(("." if parts else "") + part)
    return "".join(parts) or "configuration"


def _clean(message: str) -> str:
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _hint_for(kind: str, ctx: dict[str, Any], loc: PathKey, given: Any = None) -> str | None:
    if kind == "string_type" and "approvals" in loc and "groups" in loc:
        return "name approver groups defined under approverGroups, e.g. groups: [qa-lead]"
    if kind == "string_type" and isinstance(given, dict | list):
        return "write one value here, not a mapping or a list"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == "^/":
        return "start the path with '/'"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == CPU_QUANTITY:
        return "write CPU in cores or millicores, e.g. 250m or 0.5"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == MEMORY_QUANTITY:
        return "write memory in bytes with a unit, e.g. 128Mi or 1Gi"
    if kind == "value_error" and "windows" in loc:
        return "write windows like 'Mon-Thu 09:00-16:00' or 'Sat,Sun 10:00-14:00'"
    if kind == "value_error" and "steps" in loc:
        return "write increasing weights that end at 100, e.g. [10, 50, 100]"
    if kind == "value_error" and "strategy" in loc:
        return "let at least one of maxSurge and maxUnavailable be 1 or more"
    if kind == "value_error" and "resources" in loc:
        return "make minReplicas at most maxReplicas"
    hints = {
        "string_type": "quote the value to make it text",
        "int_type": "write a whole number",
        "int_parsing": "write a whole number",
        "float_type": "write a number (not true/false, not quoted)",
        "finite_number": "write a plain number",
        "bool_type": "write true or false",
        "list_type": "write a list ('- item' lines or [a, b])",
        "dict_type": "write a mapping of 'key: value' lines",
        "model_type": "write a mapping of 'key: value' lines",
        "literal_error": "use one of the values listed",
        "enum": "use one of the values listed",
        "string_pattern_mismatch": "use lowercase letters, digits and '-'",
        "union_tag_invalid": "set 'type' to one of the values listed",
        "canary_step": "write 10, {setWeight: 10}, {pause: {duration: 60}} or {analysis: {}}",
        "too_short": "add at least one entry",
        "greater_than_equal": "use a larger number",
        "less_than_equal": "use a smaller number",
    }
    return hints.get(kind)
