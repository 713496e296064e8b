"""Reading YAML into plain data while remembering where every value came from.

`load_source` returns the data of one file and its includes, merged, with a position index:
the path of each value (a tuple of keys and list indexes) maps to its file, line and column.
"""

from __future__ import annotations

import os
import re
import stat
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
        return str(Path(os.path.realpath(path)).relative_to(os.path.realpath(Path.cwd())))
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


MAX_FILE_BYTES = 1 << 20  # a configuration file larger than 1 MiB is refused unread
MAX_DEPTH = 40  # nesting of mappings and lists
MAX_VALUES = 200_000  # values after alias expansion (a "billion laughs" stops here)
MAX_DIGITS = 15  # integers beyond this (about 2**50) are not configuration
_STANDARD_TAGS = {
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
}
_INTEGER = re.compile(r"^[-+]?(0x[0-9a-fA-F_]+|0o[0-7_]+|[0-9_]+)$")
_NOT_FINITE = re.compile(r"^[-+]?\.(inf|Inf|INF|nan|NaN|NAN)$")
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def _read_bytes(path: Path, name: str, origin: Location | None) -> bytes:
    """The file's bytes: only a regular file, only up to MAX_FILE_BYTES, never blocking (a FIFO
    or a device named as a configuration is refused, not read). Errors are located at the
    include that named the file (the main file: its first line)."""
    origin = origin or Location(name, 1, 1)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(
            f"file not found: {name}", location=origin, hint="check the path (relative to the file)"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {name}: {exc.strerror or type(exc).__name__}",
            location=origin,
            hint="a symbolic link loop or a permission problem; point at a plain file",
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            f"{name} is not a regular file",
            location=origin,
            hint="configuration is read from plain files only (not devices, pipes or folders)",
        )
    if info.st_size > MAX_FILE_BYTES:
        raise ConfigError(
            f"{name} is {info.st_size:,} bytes; a configuration file may be at most "
            f"{MAX_FILE_BYTES:,}",
            location=origin,
            hint="split it with 'include:' or remove what is not configuration",
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"{name} is not a regular file", location=origin)
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(
            f"cannot read {name}: {exc.strerror or type(exc).__name__}", location=origin
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{name} grew past {MAX_FILE_BYTES:,} bytes while it was read", location=origin
        )
    return data


def _decode(data: bytes, name: str) -> str:
    """UTF-8 text (a UTF-8 byte order mark is allowed); anything else is a located error."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise ConfigError(
                f"{name} is {encoding} text; configuration must be UTF-8",
                location=Location(name, 1, 1),
                hint="save the file as UTF-8",
            )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be read",
            location=Location(name, line, column),
            hint="save the file as UTF-8 (it looks like another encoding, e.g. Latin-1)",
        ) from None
    if "\x00" in text:
        at = text.index("\x00")
        raise ConfigError(
            "the file contains NUL characters (UTF-16 or binary?)",
            location=Location(name, text.count("\n", 0, at) + 1, 1),
            hint="save the file as UTF-8 text",
        )
    return text.removeprefix("\ufeff")


# A node's anchor (&a), alias (*a) or tag (!t) starts right after a line start, a space, ':',
# ',', '[' or '{'; a '*' inside a plain value (a glob like `src/**`) does not.
_RISKY = re.compile(r"(?:^|[\s:,\[{])[&*!]|\d{16}|\.(?:inf|Inf|INF|nan|NaN|NAN)\b")
_BRACKETS = re.compile(r"[^\[\]{}]+")


def _needs_screening(text: str) -> bool:
    """Whether `text` could hold anything `_screen` refuses: anchors, aliases or tags, a long
    number, `.inf`/`.nan`, or brackets nested deeper than MAX_DEPTH. Plain configuration (most
    of it) is parsed once, not twice; deep block nesting is caught by the parser's own limit."""
    if _RISKY.search(text):
        return True
    depth = deepest = 0
    for char in _BRACKETS.sub("", text):
        depth = depth + 1 if char in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest > MAX_DEPTH


def _screen(yaml: YAML, text: str, name: str) -> None:
    """Walk the YAML event stream (no objects are built) and refuse, at their place, what
    configuration never needs: tags beyond the standard ones, nesting deeper than MAX_DEPTH,
    more than MAX_VALUES values once aliases are expanded, huge or non-finite numbers."""
    depth = 0
    count = 0
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, count at start) of open collections
    sizes: dict[str, int] = {}  # anchor -> values it stands for

    def fail(event: Any, message: str, hint: str) -> None:
        mark = event.start_mark
        raise ConfigError(
            message, location=Location(name, mark.line + 1, mark.column + 1), hint=hint
        )

    for event in yaml.parse(text):
        kind = type(event).__name__
        tag = getattr(event, "tag", None)
        if tag and tag not in _STANDARD_TAGS and not (kind == "ScalarEvent" and tag == "!"):
            shown = tag.replace("tag:yaml.org,2002:", "!!", 1)
            fail(
                event,
                f"YAML tag '{shown}' is not allowed",
                "remove the tag: configuration is plain mappings, lists, text and numbers",
            )
        if kind in ("MappingStartEvent", "SequenceStartEvent"):
            depth += 1
            count += 1
            if depth > MAX_DEPTH:
                fail(event, f"nested deeper than {MAX_DEPTH} levels", "flatten the structure")
            open_nodes.append((event.anchor, count))
        elif kind in ("MappingEndEvent", "SequenceEndEvent"):
            depth -= 1
            anchor, start = open_nodes.pop()
            if anchor:
                sizes[anchor] = count - start + 1
        elif kind == "ScalarEvent":
            count += 1
            if event.anchor:
                sizes[event.anchor] = 1
            if event.style is None and tag is None:
                value = event.value
                digits = len(value.lstrip("+-").replace("_", ""))
                if _INTEGER.match(value) and digits > MAX_DIGITS:
                    fail(
                        event,
                        f"number with {digits} digits is too large",
                        f"use at most {MAX_DIGITS} digits, or quote it to make it text",
                    )
                if _NOT_FINITE.match(value):
                    fail(event, f"'{value}' is not a finite number", "write a plain number")
        elif kind == "AliasEvent":
            count += sizes.get(event.anchor, 1)
        if count > MAX_VALUES:
            fail(
                event,
                f"the configuration expands to more than {MAX_VALUES:,} values",
                "aliases (*name) that repeat large parts multiply; write the values out plainly",
            )


def _read_one(path: Path, name: str, origin: Location | None) -> tuple[Any, Source]:
    text = _decode(_read_bytes(path, name, origin), name)
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        if _needs_screening(text):
            _screen(yaml, text, name)
        try:
            node = yaml.load(text)
        except RecursionError:
            _screen(yaml, text, name)  # finds where it nests too deep, and says so there
            raise
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
    except (RecursionError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"YAML cannot be read: {type(exc).__name__}",
            location=Location(name, 1, 1),
            hint="simplify the file: plain mappings, lists, text and numbers",
        ) from None
    source = Source(data={})
    data = _plain(node, (), name, source.values, source.keys)
    source.values[()] = Location(name, 1, 1)
    return data, source


def load_source(path: Path) -> Source:
    """Read `path` and its `include:` files (relative to the including file, inside the
    configuration's folder), merged."""
    root = Path(os.path.realpath(path))
    return _load(root, [], None, root.parent)


def _load(path: Path, chain: list[Path], origin: Location | None, project: Path) -> Source:
    name = _display(path)
    if path in chain:
        cycle = " -> ".join(_display(p) for p in [*chain[chain.index(path) :], path])
        raise ConfigError(
            f"include cycle: {cycle}", location=origin, hint="remove one of these includes"
        )
    data, source = _read_one(path, name, origin)
    if data is None and chain:
        raise ConfigError(
            f"included file {name} is empty",
            location=origin,
            hint="add configuration to it, or remove the include",
        )
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
            child = _load(_include_path(path, item, where, project), [*chain, path], where, project)
        except ConfigError as exc:
            errors.append(exc)
            continue
        errors.extend(_merge(source, child))
    if errors:
        from shipline.errors import ConfigErrors

        raise ConfigErrors(errors)
    return source


def _include_path(parent: Path, item: str, where: Location | None, project: Path) -> Path:
    """Where `include: [item]` of `parent` points: a file inside the project's folder."""
    target = Path(os.path.realpath(parent.parent / item))
    if not target.is_relative_to(project):
        raise ConfigError(
            f"include '{item}' points outside the project's folder",
            location=where,
            hint="include only files beside the main configuration file or in folders below it",
        )
    return target


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
