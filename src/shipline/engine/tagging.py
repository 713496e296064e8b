"""Image tags of git refs by the spec's tag strategies: light enough that `ci tag` starts
without the state store or the engine."""

from __future__ import annotations

from pathlib import Path

from shipline.domain.tags import ImageTag, Strategy, TagError, image_tag
from shipline.engine.wiring import rev_parse
from shipline.errors import UserError

__all__ = ["strategy_of", "tag_of"]


def strategy_of(name: str) -> Strategy:
    """A tag strategy by name (exit 2 for an unknown one)."""
    try:
        return Strategy(name)
    except ValueError:
        raise UserError(
            f"unknown tag strategy '{name}'", hint="auto, semver, commit or custom"
        ) from None


def tag_of(ref: str, strategy: str, *, sha: str | None, custom: str | None, repo: Path) -> ImageTag:
    """The image tag of `ref` by `strategy` (the commit SHA from git when not given)."""
    chosen = strategy_of(strategy)
    if custom is not None and chosen != Strategy.CUSTOM:
        raise UserError(
            f"--custom-tag goes with --strategy custom (the strategy is {strategy})",
            hint="add --strategy custom, or drop --custom-tag",
        )
    if not ref.startswith("refs/"):  # a short name means what git says it means
        ref = rev_parse(repo, "--symbolic-full-name", ref) or ref
    if chosen == Strategy.COMMIT and not sha:
        sha = rev_parse(repo, "--verify", "--quiet", f"{ref}^{{commit}}")
    try:
        return image_tag(ref, chosen, sha=sha, custom=custom)
    except TagError as exc:
        raise UserError(str(exc), hint="see `shipline ci tag --help` for the strategies") from None
