"""Every row of the spec's tag table, pull requests, the OCI grammar, and invalid refs."""

from __future__ import annotations

import pytest

from shipline.domain.tags import OCI_TAG, Strategy, TagError, image_tag, sanitize

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("strategy", "ref", "tag"),
    [
        (Strategy.AUTO, "main", "latest"),
        (Strategy.AUTO, "refs/heads/main", "latest"),
        (Strategy.AUTO, "develop", "dev"),
        (Strategy.AUTO, "feature/xyz", "feature-xyz"),
        (Strategy.AUTO, "release/1.2.3", "1.2.3"),
        (Strategy.AUTO, "hotfix/fix", "hotfix-fix"),
        (Strategy.SEMVER, "v1.2.3", "1.2.3"),
        (Strategy.SEMVER, "refs/tags/v1.2.3", "1.2.3"),
        (Strategy.SEMVER, "v1.2.3-rc.1+build.7", "1.2.3-rc.1_build.7"),
        (Strategy.AUTO, "refs/tags/v2.0.0", "2.0.0"),
        (Strategy.AUTO, "feature/JIRA-12_new#UI", "feature-JIRA-12_new-UI"),
    ],
    ids=[
        "main",
        "main-ref",
        "develop",
        "feature",
        "release",
        "hotfix",
        "semver",
        "semver-ref",
        "semver-pre-build",
        "auto-tag",
        "sanitized",
    ],
)
def test_tag_table(strategy: Strategy, ref: str, tag: str) -> None:
    result = image_tag(ref, strategy)
    assert result.tag == tag
    assert result.push
    assert OCI_TAG.match(result.tag)


def test_commit_and_custom() -> None:
    assert image_tag("any/branch", Strategy.COMMIT, sha=SHA).tag == SHA
    assert image_tag("main", Strategy.CUSTOM, custom="v1.2.3-rc1").tag == "v1.2.3-rc1"


@pytest.mark.parametrize("ref", ["refs/pull/42/merge", "pull/42/head"])
def test_pull_requests_never_push(ref: str) -> None:
    auto = image_tag(ref)
    assert (auto.tag, auto.push) == ("pr-42", False)
    assert image_tag(ref, Strategy.COMMIT, sha=SHA).push is False
    assert image_tag(ref, Strategy.CUSTOM, custom="x").push is False


@pytest.mark.parametrize(
    ("ref", "strategy", "kw"),
    [
        ("", Strategy.AUTO, {}),
        ("feature/a..b", Strategy.AUTO, {}),
        ("feature/x y", Strategy.AUTO, {}),
        ("main.lock", Strategy.AUTO, {}),
        ("-main", Strategy.AUTO, {}),
        ("a//b", Strategy.AUTO, {}),
        ("v1.2", Strategy.SEMVER, {}),
        ("1.02.3", Strategy.SEMVER, {}),
        ("main", Strategy.COMMIT, {}),
        ("main", Strategy.COMMIT, {"sha": "xyz"}),
        ("main", Strategy.CUSTOM, {}),
        ("main", Strategy.CUSTOM, {"custom": "..."}),
    ],
)
def test_invalid(ref: str, strategy: Strategy, kw: dict[str, str]) -> None:
    with pytest.raises(TagError):
        image_tag(ref, strategy, **kw)


def test_sanitize_length_and_grammar() -> None:
    long = sanitize("x" * 300)
    assert len(long) == 128
    assert sanitize(".hidden-") == "hidden"
