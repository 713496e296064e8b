"""Reading YAML into plain data while remembering where every value came from.

`load_source` returns the data of one file and its includes, merged, with a position index:
the path of each value (a tuple of keys and list indexes) maps to its file, line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from shipline.errors import ConfigError, Location

PathKey = tuple[str | int, ...]


@dataclass
class Source:
    """Merged data of a configuration and the positions of its values and keys."""

    data: dict[str, Any]
    values: dict[PathKey, Location] = field(default_factory=dict)
    keys: dict[PathKey, Location] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def locate(self, path: PathKey, *, key: bool = False) -> Location | None:
        """The position of `path`, or of its nearest located ancestor.

        Path parts that do not exist in the data (a union's tag, a validator's name) are skipped.
        """
        known: list[str | int] = []
        best: Location | None = None
        for part in path:
            candidate = (*known, part)
            if candidate in self.values:
                known.append(part)
                best = self.values[candidate]
        resolved = tuple(known)
        if key and resolved in self.keys:
            return self.keys[resolved]
        return best if best is not None else self.values.get((), None)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _plain(
    node: Any,
    path: PathKey,
    name: str,
    values: dict[PathKey, Location],
    keys: dict[PathKey, Location],
) -> Any:
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for k, v in node.items():
            line, col = node.lc.key(k)
            vline, vcol = node.lc.value(k)
            key = str(k) if not isinstance(k, str) else k
            keys[(*path, key)] = Location(name, line + 1, col + 1)
            values[(*path, key)] = Location(name, vline + 1, vcol + 1)
            out[key] = _plain(v, (*path, key), name, values, keys)
        return out
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        for i, v in enumerate(node):
            line, col = node.lc.item(i)
            values[(*path, i)] = Location(name, line + 1, col + 1)
            items.append(_plain(v, (*path, i), name, values, keys))
        return items
    if hasattr(node, "value") and type(node).__module__.startswith("ruamel"):
        return _scalar(node)
    return node


def _scalar(node: Any) -> Any:
    # ruamel wraps some scalars (ScalarFloat, ScalarBoolean, TaggedScalar); unwrap to plain types
    for kind in (bool, int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return str(getattr(node, "value", node))


def _mark(exc: MarkedYAMLError, name: str) -> Location | None:
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return None
    return Location(name, mark.line + 1, mark.column + 1)


def _read_one(path: Path, name: str, origin: Location | None) -> tuple[Any, Source]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"file not found: {name}", location=origin, hint="check the path (relative to the file)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {name}: {exc}", location=origin) from None
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        node = yaml.load(text)
    except DuplicateKeyError as exc:
        found = re.search(r'duplicate key "([^"]*)"', exc.problem or "")
        key = found.group(1) if found else "?"
        raise ConfigError(
            f"duplicate key '{key}' in this mapping",
            location=Location(name, exc.problem_mark.line + 1, exc.problem_mark.column + 1)
            if exc.problem_mark
            else None,
            hint="each key may appear once in a mapping; remove or rename one",
        ) from None
    except MarkedYAMLError as exc:
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        raise ConfigError(
            f"YAML syntax error: {problem}",
            location=_mark(exc, name),
            hint="check indentation, quotes and ':' after keys",
        ) from None
    except YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", location=Location(name, 1, 1)) from None
    source = Source(data={})
    data = _plain(node, (), name, source.values, source.keys)
    source.values[()] = Location(name, 1, 1)
    return data, source


def load_source(path: Path) -> Source:
    """Read `path` and its `include:` files (relative to the including file), merged."""
    return _load(path.resolve(), [], None)


def _load(path: Path, chain: list[Path], origin: Location | None) -> Source:
    name = _display(path)
    if path in chain:
        cycle = " -> ".join(_display(p) for p in [*chain[chain.index(path) :], path])
        raise ConfigError(
            f"include cycle: {cycle}", location=origin, hint="remove one of these includes"
        )
    data, source = _read_one(path, name, origin)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            "the configuration must be a mapping of keys (project, services, ...)",
            location=Location(name, 1, 1),
            hint="start the file with 'project: NAME'",
        )
    source.data = data
    source.files.append(path)
    includes = data.get("include", [])
    if not isinstance(includes, list):
        return source  # the schema reports the wrong type
    errors: list[ConfigError] = []
    for index, item in enumerate(includes):
        where = source.values.get(("include", index))
        if not isinstance(item, str):
            continue
        try:
            child = _load((path.parent / item).resolve(), [*chain, path], where)
        except ConfigError as exc:
            errors.append(exc)
            continue
        errors.extend(_merge(source, child))
    if errors:
        from shipline.errors import ConfigErrors

        raise ConfigErrors(errors)
    return source


def _merge(into: Source, child: Source) -> list[ConfigError]:
    """Merge an included file into its parent: lists append, mappings join, keys clash."""
    errors: list[ConfigError] = []
    into.files.extend(child.files)
    offsets: dict[str, int] = {}  # list keys appended to: index shift
    skipped: set[PathKey] = set()  # clashing paths: positions stay the parent's
    for key, value in child.data.items():
        if key == "include":
            skipped.add((key,))
            continue
        if key not in into.data:
            into.data[key] = value
        elif isinstance(into.data[key], list) and isinstance(value, list):
            offsets[key] = len(into.data[key])
            into.data[key].extend(value)
        elif isinstance(into.data[key], dict) and isinstance(value, dict):
            for sub, subvalue in value.items():
                if sub in into.data[key]:
                    skipped.add((key, sub))
                    errors.append(
                        ConfigError(
                            f"'{key}.{sub}' is defined twice (also at {into.keys.get((key, sub))})",
                            location=child.keys.get((key, sub)),
                            hint="define it in one file only",
                        )
                    )
                else:
                    into.data[key][sub] = subvalue
            skipped.add((key,))  # the parent's mapping keeps its own position
        else:
            skipped.add((key,))
            errors.append(
                ConfigError(
                    f"'{key}' is set in two files (also at {into.keys.get((key,))})",
                    location=child.keys.get((key,)),
                    hint="set it in one file only",
                )
            )
    for table_from, table_to in ((child.values, into.values), (child.keys, into.keys)):
        for path, loc in table_from.items():
            if not path or path[0] == "include" or path[:2] in skipped:
                continue
            head, target = path[0], path
            if isinstance(head, str) and head in offsets and len(path) > 1:
                index = path[1]
                if isinstance(index, int):
                    target = (head, index + offsets[head], *path[2:])
            table_to[target] = loc
    return errors
