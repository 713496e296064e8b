"""Which services a change touches: changed paths → services, through glob rules.

Rules, strongest first: a "build everything" path marks every service; a stack-wide path
(`docker/go/**`) marks every service of that stack; a service's own `paths` mark it; a shared
path (`shared/proto/**`) marks every service that declares it. Pure: the caller gives the paths.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from shipline.domain.models import Config

_GLOB_CHARS = set("*?[")


def _segment(segment: str) -> str:
    return "".join({"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char)) for char in segment)


def glob_regex(pattern: str) -> str:
    """A regular expression for a path glob: `*` within a segment, `**` across segments.

    A pattern without glob characters, or ending in `/**`, matches the path itself and
    everything below it.
    """
    pattern = pattern.strip("/")
    tail = ""
    if pattern.endswith("/**") or pattern == "**":
        pattern, tail = pattern.removesuffix("**").rstrip("/"), r"(?:/.*)?"
        if not pattern:
            return ".*"
    elif not _GLOB_CHARS & set(pattern):
        return re.escape(pattern) + r"(?:/.*)?"
    segments = pattern.split("/")
    regex = ""
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            regex += r"(?:.*/)?"
        else:
            regex += _segment(segment) + ("" if last else "/")
    return regex + tail


Target = tuple[str, str]  # (kind, name): ("all", "*"), ("stack", S), ("paths" | "shared", service)
BUILD_ALL: Target = ("all", "*")


@dataclass
class _Rules:
    """Targets by pattern: directory patterns in a dict by prefix, other globs as regexes."""

    prefixes: dict[str, list[Target]] = field(default_factory=lambda: defaultdict(list))
    regexes: list[tuple[re.Pattern[str], Target]] = field(default_factory=list)
    depth: int = 0
    _memo: dict[str, list[Target]] = field(default_factory=dict)

    def add(self, pattern: str, target: Target) -> None:
        self._memo.clear()
        clean = pattern.strip("/")
        head = clean.removesuffix("/**")
        if head and not _GLOB_CHARS & set(head):
            self.prefixes[head].append(target)
            self.depth = max(self.depth, head.count("/") + 1)
        else:
            self.regexes.append((re.compile(glob_regex(clean) + r"\Z"), target))

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
        for regex, target in self.regexes:
            if regex.match(path):
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


def affected_services(
    config: Config, paths: Iterable[str], build_all_paths: Iterable[str] = ()
) -> Affected:
    """Services touched by `paths` (repository-relative, '/'-separated)."""
    rules = _Rules()  # one set of rules, so each path is matched once
    for pattern in build_all_paths:
        rules.add(pattern, BUILD_ALL)
    for name, stack in config.stacks.items():
        for pattern in stack.paths:
            rules.add(pattern, ("stack", name))
    for service in config.services:
        for pattern in service.paths:
            rules.add(pattern, ("paths", service.name))
        for pattern in service.shared_paths:
            rules.add(pattern, ("shared", service.name))
    stack_members: dict[str, list[str]] = defaultdict(list)
    for service in config.services:
        stack_members[service.stack].append(service.name)
    reasons: dict[str, list[str]] = defaultdict(list)
    everything: list[str] = []
    count = 0
    for path in paths:
        count += 1
        hits = rules.match(path)
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
    if everything:
        return Affected({s.name: everything for s in config.services}, True, count)
    order = [s.name for s in config.services]
    return Affected({name: reasons[name] for name in order if name in reasons}, False, count)
