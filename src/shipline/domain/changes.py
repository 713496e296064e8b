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


@dataclass
class _Rules:
    """Targets by pattern: directory patterns in a dict by prefix, other globs as regexes."""

    prefixes: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    regexes: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    depth: int = 0

    def add(self, pattern: str, target: str) -> None:
        clean = pattern.strip("/")
        head = clean.removesuffix("/**")
        if head and not _GLOB_CHARS & set(head):
            self.prefixes[head].append(target)
            self.depth = max(self.depth, head.count("/") + 1)
        else:
            self.regexes.append((re.compile(glob_regex(clean) + r"\Z"), target))

    def match(self, path: str) -> list[str]:
        found: list[str] = []
        if self.prefixes:
            cut = -1
            for _ in range(self.depth):
                cut = path.find("/", cut + 1)
                prefix = path if cut < 0 else path[:cut]
                found.extend(self.prefixes.get(prefix, ()))
                if cut < 0:
                    break
        for regex, target in self.regexes:
            if regex.match(path):
                found.append(target)
        return found


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
    everything = _Rules()
    for pattern in build_all_paths:
        everything.add(pattern, "*")
    by_stack = _Rules()
    for name, stack in config.stacks.items():
        for pattern in stack.paths:
            by_stack.add(pattern, name)
    own = _Rules()
    for service in config.services:
        for pattern in service.paths:
            own.add(pattern, f"paths:{service.name}")
        for pattern in service.shared_paths:
            own.add(pattern, f"shared:{service.name}")
    stack_members: dict[str, list[str]] = defaultdict(list)
    for service in config.services:
        stack_members[service.stack].append(service.name)
    reasons: dict[str, list[str]] = defaultdict(list)
    build_all = False
    count = 0
    for path in paths:
        count += 1
        if everything.match(path):
            build_all = True
            reasons["*"].append(f"{path} (builds everything)")
            continue
        for stack_name in by_stack.match(path):
            for name in stack_members[stack_name]:
                reasons[name].append(f"{path} (stack {stack_name})")
        for target in own.match(path):
            kind, name = target.split(":", 1)
            reasons[name].append(
                f"{path} ({'shared path' if kind == 'shared' else 'service path'})"
            )
    if build_all:
        why = reasons.pop("*")
        return Affected({s.name: why for s in config.services}, True, count)
    order = [s.name for s in config.services]
    return Affected({name: reasons[name] for name in order if name in reasons}, False, count)
