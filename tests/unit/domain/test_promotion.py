"""The ladder's promotion rules and the trigger rules, as tables."""

from __future__ import annotations

import pytest

from shipline.domain.models import Trigger
from shipline.domain.promotion import (
    SPEC_TRIGGERS,
    PromotionRefused,
    matching_triggers,
    parse_ref,
    promotion_path,
)

LADDER = ["dev", "qa", "uat1", "uat2", "uat3", "staging", "live"]


@pytest.mark.parametrize(
    ("source", "targets", "skippable", "expected"),
    [
        ("dev", ["qa"], set(), ["qa"]),
        ("dev", ["uat1", "qa"], set(), ["qa", "uat1"]),  # put in ladder order
        ("uat1", ["uat3"], {"uat2"}, ["uat3"]),
        ("dev", ["qa", "uat1", "uat2", "uat3", "staging", "live"], set(), LADDER[1:]),
    ],
)  # fmt: skip
def test_allowed_promotions(
    source: str, targets: list[str], skippable: set[str], expected: list[str]
) -> None:
    assert promotion_path(LADDER, source, targets, skippable) == expected


@pytest.mark.parametrize(
    ("source", "targets", "said"),
    [
        ("dev", ["staging"], "would skip qa, uat1, uat2, uat3"),
        ("qa", ["dev"], "not above 'qa'"),
        ("qa", ["qa"], "not above 'qa'"),
        ("dev", ["prod"], "'prod' is not on the ladder"),
        ("nowhere", ["qa"], "'nowhere' is not on the ladder"),
        ("dev", [], "no environment"),
    ],
)  # fmt: skip
def test_refused_promotions(source: str, targets: list[str], said: str) -> None:
    with pytest.raises(PromotionRefused, match=said):
        promotion_path(LADDER, source, targets, set())


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("refs/heads/develop", ["dev"]),
        ("develop", ["dev"]),
        ("refs/heads/main", ["staging"]),
        ("refs/tags/v1.4.0", ["live"]),
        ("refs/tags/1.4.0", []),  # tags not starting with v deploy nothing
        ("refs/heads/feature/x", []),
        ("refs/heads/v1.4.0", []),  # a branch named like a tag stays a branch
        ("refs/pull/42/merge", [None]),  # pull requests: CI only
    ],
)  # fmt: skip
def test_the_specs_triggers(ref: str, expected: list[str | None]) -> None:
    assert [t.deploy_to for t in matching_triggers(SPEC_TRIGGERS, parse_ref(ref))] == expected


def test_configured_globs_and_push_false() -> None:
    rules = [Trigger(branch="release/*", deploy_to="uat1"), Trigger(branch="main", push=False)]
    assert [t.deploy_to for t in matching_triggers(rules, parse_ref("release/2026.11"))] == ["uat1"]
    assert matching_triggers(rules, parse_ref("main")) == []
    with pytest.raises(PromotionRefused):
        parse_ref("refs/notes/commits")
    for nameless in ("", " ", "refs/heads/", "refs/tags/", "refs/pull/"):
        with pytest.raises(PromotionRefused, match="names no branch"):
            parse_ref(nameless)
