"""Image tags from git refs: the spec's tag strategies (auto, semver, commit, custom).

| strategy | ref            | tag         |
| auto     | main           | latest      |
| auto     | develop        | dev         |
| auto     | feature/xyz    | feature-xyz |
| auto     | release/1.2.3  | 1.2.3       |
| auto     | hotfix/fix     | hotfix-fix  |
| semver   | v1.2.3 (tag)   | 1.2.3       |
| commit   | any            | commit SHA  |
| custom   | any            | customTag   |

Pull-request refs never push. Every tag is made to fit the OCI tag grammar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

OCI_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
SEMVER = re.compile(
    r"^v?(?P<core>(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*))"
    r"(?:-(?P<pre>(0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*))?$"
)
SHA = re.compile(r"^[0-9a-f]{7,64}$")
PULL = re.compile(r"^(?:refs/)?pull/(?P<number>\d+)/(?:merge|head)$")


class TagError(ValueError):
    """The ref or strategy cannot give a tag."""


class Strategy(StrEnum):
    """How a tag is chosen."""

    AUTO = "auto"
    SEMVER = "semver"
    COMMIT = "commit"
    CUSTOM = "custom"


@dataclass(frozen=True)
class ImageTag:
    """The tag, whether the build may push it, and why."""

    tag: str
    push: bool
    reason: str


def sanitize(text: str) -> str:
    """Make `text` a valid OCI tag: invalid characters become '-', at most 128 characters."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-")
    cleaned = cleaned[:128].rstrip(".-")
    if not cleaned or not OCI_TAG.match(cleaned):
        raise TagError(f"'{text}' gives no valid image tag")
    return cleaned


def _check_ref(ref: str) -> None:
    bad = (
        not ref
        or ref != ref.strip()
        or any(c in ref for c in " ~^:?*[\\\x7f")
        or any(ord(c) < 32 for c in ref)
        or ".." in ref
        or "@{" in ref
        or ref.endswith((".", "/", ".lock"))
        or ref.startswith(("/", "-"))
        or "//" in ref
    )
    if bad:
        raise TagError(f"'{ref}' is not a valid git ref")


def _short(ref: str) -> tuple[str, str]:
    """(kind, name): kind is branch, tag or pull."""
    if PULL.match(ref):
        return "pull", ref
    for prefix, kind in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
        if ref.startswith(prefix):
            return kind, ref[len(prefix) :]
    return "branch", ref


def semver_tag(version: str) -> str:
    """'v1.2.3' → '1.2.3' (build metadata joined with '_', as '+' is not allowed in tags)."""
    match = SEMVER.match(version)
    if not match:
        raise TagError(f"'{version}' is not a semantic version like v1.2.3")
    return sanitize(version.removeprefix("v").replace("+", "_"))


def image_tag(
    ref: str,
    strategy: Strategy = Strategy.AUTO,
    *,
    sha: str | None = None,
    custom: str | None = None,
) -> ImageTag:
    """The image tag for `ref` under `strategy`."""
    _check_ref(ref)
    kind, name = _short(ref)
    push = kind != "pull"
    why = "" if push else "; pull-request builds never push"
    if strategy == Strategy.CUSTOM:
        if not custom:
            raise TagError("the custom strategy needs a custom tag")
        return ImageTag(sanitize(custom), push, "custom tag" + why)
    if strategy == Strategy.COMMIT:
        if not sha or not SHA.match(sha):
            raise TagError("the commit strategy needs the commit SHA (40 hex digits)")
        return ImageTag(sha, push, "commit SHA" + why)
    if strategy == Strategy.SEMVER:
        return ImageTag(semver_tag(name), push, "semantic version of the tag" + why)
    if kind == "pull":
        number = PULL.match(ref)
        return ImageTag(
            f"pr-{number['number'] if number else 'unknown'}", False, "pull request; never pushed"
        )
    if kind == "tag":
        if SEMVER.match(name):
            return ImageTag(semver_tag(name), True, "release tag")
        return ImageTag(sanitize(name), True, "git tag")
    if name in {"main", "master"}:
        return ImageTag("latest", True, "main branch")
    if name == "develop":
        return ImageTag("dev", True, "develop branch")
    if name.startswith("release/"):
        version = name.removeprefix("release/")
        if SEMVER.match(version):
            return ImageTag(semver_tag(version), True, "release branch")
        return ImageTag(sanitize(version), True, "release branch")
    return ImageTag(sanitize(name.replace("/", "-")), True, "branch")
