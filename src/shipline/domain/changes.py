"""Which services a change touches: changed paths → services, through gitignore-style rules.

Rules, strongest first: a "build everything" path marks every service; a stack-wide path
(`docker/go/**`) marks every service of that stack; a service's own `paths` mark it; a shared
path (`shared/proto/**`) marks every service that declares it. Pure: the caller gives the paths.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the rules are plain data: detection runs without the config's models
    from shipline.domain.models import Config

_GLOB_CHARS = set("*?[!\\")


def clean_pattern(pattern: str) -> str:
    """A pattern as the repository root sees it: `./src/x/**` is `src/x/**` (a leading `/`
    anchors, as in .gitignore; the comparison is the same)."""
    negated = pattern.startswith("!")
    body = pattern[1:] if negated else pattern
    while body.startswith("./"):
        body = body[2:]
    return ("!" if negated else "") + body


def _directory(pattern: str) -> str | None:
    """The folder an anchored plain pattern names (`services/api`, `services/api/**`,
    `/docs`), else None. A name with no slash (`docs`) matches at any depth, as in .gitignore."""
    anchored = pattern.startswith("/") or "/" in pattern.strip("/")
    head = pattern.strip("/").removesuffix("/**")
    if not anchored or not head or _GLOB_CHARS & set(head) or head == "**":
        return None
    return head


def _anchor(pattern: str) -> str | None:
    """The literal first folder of an anchored pattern (`src/*/x` -> `src`), else None: the
    pattern can match anywhere (`*.md`, `Dockerfile`, `**/x`)."""
    body = pattern.lstrip("!")
    stripped = body.strip("/")
    if "/" not in stripped:
        return None  # no slash but a trailing one: matches at any depth, as in .gitignore
    first = stripped.split("/", 1)[0]
    return None if _GLOB_CHARS & set(first) else first


Target = tuple[str, str]  # (kind, name): ("all", "*"), ("stack", S), ("paths" | "shared", service)
BUILD_ALL: Target = ("all", "*")


def path_spec(patterns: Iterable[str]) -> Any:
    """Gitignore-style patterns (pathspec): `*`, `?`, `[ab]`, `**`, `!` excludes, the last
    matching pattern wins."""
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines([clean_pattern(p) for p in patterns])


@dataclass
class _Rules:
    """Targets by pattern. A target whose patterns are all plain folders is looked up by path
    prefix (most services: fast, memoised); any other is a gitignore-style spec, tried only on
    paths under the folders its patterns are anchored to."""

    prefixes: dict[str, list[Target]] = field(default_factory=lambda: defaultdict(list))
    anchored: dict[str, list[tuple[Any, Target]]] = field(default_factory=lambda: defaultdict(list))
    anywhere: list[tuple[Any, Target]] = field(default_factory=list)
    depth: int = 0
    _memo: dict[str, list[Target]] = field(default_factory=dict)

    def add(self, patterns: list[str], target: Target) -> None:
        self._memo.clear()
        cleaned = [clean_pattern(p) for p in patterns if p.strip()]
        folders = [_directory(p) for p in cleaned]
        if all(f is not None for f in folders):
            for folder in folders:
                assert folder is not None
                self.prefixes[folder].append(target)
                self.depth = max(self.depth, folder.count("/") + 1)
            return
        spec = path_spec(cleaned)
        anchors = {_anchor(p) for p in cleaned if not p.startswith("!")}
        if None in anchors:
            self.anywhere.append((spec, target))
        else:
            for anchor in anchors:
                assert anchor is not None
                self.anchored[anchor].append((spec, target))

    def match(self, path: str) -> list[Target]:
        found: list[Target] = []
        if self.prefixes:
            # Directory rules depend only on the path's first `depth` segments: look those up once.
            end = -1
            for _ in range(self.depth):
                end = path.find("/", end + 1)
                if end < 0:
                    break
            key = path if end < 0 else path[:end]
            hits = self._memo.get(key)
            if hits is None:
                hits = self._memo[key] = self._prefix_hits(key)
            found.extend(hits)
        head = path.split("/", 1)[0]
        for spec, target in [*self.anchored.get(head, ()), *self.anywhere]:
            if spec.match_file(path) and target not in found:
                found.append(target)
        return found

    def _prefix_hits(self, key: str) -> list[Target]:
        hits: list[Target] = []
        cut = -1
        while True:
            cut = key.find("/", cut + 1)
            hits.extend(self.prefixes.get(key if cut < 0 else key[:cut], ()))
            if cut < 0:
                return hits


@dataclass(frozen=True)
class Affected:
    """The services a change touches, each with the paths and rules that say so."""

    services: dict[str, list[str]]
    build_all: bool
    paths: int


@dataclass(frozen=True)
class PathRules:
    """What change detection needs of a configuration, as plain data: the "build everything"
    paths, each stack's paths, and each service's stack, own paths and shared paths."""

    build_all: list[str]
    stacks: dict[str, list[str]]
    services: list[tuple[str, str, list[str], list[str]]]  # name, stack, paths, shared paths

    @classmethod
    def of(cls, config: Config, build_all_paths: Iterable[str] = ()) -> PathRules:
        """The rules of `config` (with `build_all_paths` as its "build everything" paths)."""
        return cls(
            list(build_all_paths),
            {name: list(stack.paths) for name, stack in config.stacks.items()},
            [(s.name, s.stack, list(s.paths), list(s.shared_paths)) for s in config.services],
        )

    def to_json(self) -> dict[str, Any]:
        """The rules as JSON-able data."""
        return {"buildAll": self.build_all, "stacks": self.stacks,
                "services": [list(s) for s in self.services]}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PathRules:
        """Rules saved by `to_json`."""
        return cls(
            list(data["buildAll"]),
            {str(k): list(v) for k, v in data["stacks"].items()},
            [(str(n), str(st), list(p), list(sh)) for n, st, p, sh in data["services"]],
        )


def affected_services(
    config: Config, paths: Iterable[str], build_all_paths: Iterable[str] = ()
) -> Affected:
    """Services of `config` touched by `paths` (repository-relative, '/'-separated)."""
    return affected(PathRules.of(config, build_all_paths), paths)


def affected(rules: PathRules, paths: Iterable[str]) -> Affected:
    """Services touched by `paths` (repository-relative, '/'-separated) under `rules`."""
    matcher = _Rules()  # one set of rules, so each path is matched once
    matcher.add(rules.build_all, BUILD_ALL)
    for name, stack_paths in rules.stacks.items():
        matcher.add(stack_paths, ("stack", name))
    for name, _, own, shared in rules.services:
        matcher.add(own, ("paths", name))
        matcher.add(shared, ("shared", name))
    stack_members: dict[str, list[str]] = defaultdict(list)
    for name, stack, _, _ in rules.services:
        stack_members[stack].append(name)
    reasons: dict[str, list[str]] = defaultdict(list)
    everything: list[str] = []
    count = 0
    for path in paths:
        count += 1
        hits = matcher.match(path)
        if not hits:
            continue
        if BUILD_ALL in hits:
            everything.append(f"{path} (builds everything)")
            continue
        for kind, name in hits:
            if kind == "stack":
                for member in stack_members[name]:
                    reasons[member].append(f"{path} (stack {name})")
            else:
                reasons[name].append(
                    f"{path} ({'shared path' if kind == 'shared' else 'service path'})"
                )
    order = [name for name, _, _, _ in rules.services]
    if everything:
        return Affected({name: everything for name in order}, True, count)
    return Affected({name: reasons[name] for name in order if name in reasons}, False, count)
