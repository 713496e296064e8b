"""Promotion rules: which rungs a release may move to, and which branch or tag starts what.

Pure decisions; the engine asks them before it queues anything."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from shipline.domain.models import Trigger


class PromotionRefused(ValueError):
    """A promotion the ladder does not allow (the message says why and what to do)."""


def promotion_path(
    ladder: Sequence[str], source: str, targets: Sequence[str], skippable: set[str]
) -> list[str]:
    """`targets` in ladder order, after checking that each is above `source` and that every
    rung between `source` and the highest target is either promoted to or may be skipped."""
    if source not in ladder:
        raise PromotionRefused(f"'{source}' is not on the ladder ({' -> '.join(ladder)})")
    if not targets:
        raise PromotionRefused("no environment to promote to")
    for name in targets:
        if name not in ladder:
            raise PromotionRefused(f"'{name}' is not on the ladder ({' -> '.join(ladder)})")
        if ladder.index(name) <= ladder.index(source):
            raise PromotionRefused(
                f"'{name}' is not above '{source}' on the ladder: promotion goes up"
                f" ({' -> '.join(ladder)})"
            )
    chosen = sorted(set(targets), key=ladder.index)
    top = ladder.index(chosen[-1])
    skipped = [
        rung
        for rung in ladder[ladder.index(source) + 1 : top]
        if rung not in chosen and rung not in skippable
    ]
    if skipped:
        raise PromotionRefused(
            f"promoting {source} -> {chosen[-1]} would skip {', '.join(skipped)}: add "
            f"{'it' if len(skipped) == 1 else 'them'} to --to (in ladder order), or mark the"
            " rung `skippable: true` in the configuration"
        )
    return chosen


@dataclass(frozen=True)
class Ref:
    """A git reference as a trigger sees it."""

    kind: str  # branch, tag, pull-request
    name: str  # main, v1.4.0, 42


def parse_ref(ref: str) -> Ref:
    """refs/heads/X, refs/tags/T, refs/pull/N/..., or a plain branch name."""
    if ref.startswith("refs/heads/"):
        found = Ref("branch", ref.removeprefix("refs/heads/"))
    elif ref.startswith("refs/tags/"):
        found = Ref("tag", ref.removeprefix("refs/tags/"))
    elif ref.startswith("refs/pull/"):
        found = Ref("pull-request", ref.removeprefix("refs/pull/").split("/", 1)[0])
    elif ref.startswith("refs/"):
        raise PromotionRefused(f"'{ref}' is neither a branch, a tag nor a pull request")
    else:
        found = Ref("branch", ref)
    if not found.name.strip():
        raise PromotionRefused(
            f"'{ref}' names no branch, tag or pull request (e.g. refs/heads/main, refs/tags/v1.4.0)"
        )
    return found


# The spec's automatic deployments: develop -> dev, main -> staging, v* tags -> live.
SPEC_TRIGGERS = (
    Trigger(branch="develop", deploy_to="dev"),
    Trigger(branch="main", deploy_to="staging"),
    Trigger(tag="v*", deploy_to="live"),
    Trigger(pull_request=True, push=False),
)


def matching_triggers(triggers: Sequence[Trigger], ref: Ref) -> list[Trigger]:
    """The rules `ref` moving fires (branch and tag patterns as shell globs)."""
    found = []
    for rule in triggers:
        if ref.kind == "pull-request":
            if rule.pull_request:
                found.append(rule)
        elif not rule.push:
            continue
        else:
            pattern = rule.branch if ref.kind == "branch" else rule.tag
            if pattern and fnmatch.fnmatchcase(ref.name, pattern):
                found.append(rule)
    return found
