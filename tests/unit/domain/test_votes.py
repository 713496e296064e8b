"""What one more vote does, table-driven: counted, or not counted with the reason; and who is
still needed afterwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shipline.domain.approvals import Outcome, Vote, vote_effect
from shipline.domain.models import ApprovalPolicy

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
MEMBERS = {"cab": ["casey", "cameron"], "rm": ["riley", "rita"], "cto": ["taylor"]}
REQUESTER = "riley"


def _policy(mode: str, groups: tuple[str, ...] = ("cab", "rm", "cto")) -> ApprovalPolicy:
    return ApprovalPolicy.model_validate({"groups": list(groups), "mode": mode})


def _votes(*spec: str) -> list[Vote]:
    """'+casey' approves, '-casey' rejects; one minute apart."""
    return [Vote(s[1:], s[0] == "+", T0 + timedelta(minutes=i + 1)) for i, s in enumerate(spec)]


CASES = [
    # id, mode, votes before, the vote, counted, reason contains, still needed
    ("first-counts", "all", [], "+casey", True, "counted", ("rm", "cto")),
    ("same-person-again", "all", ["+casey"], "+casey", False, "already voted", ("rm", "cto")),
    ("group-already-satisfied", "all", ["+casey"], "+cameron", False, "already approved",
     ("rm", "cto")),
    ("out-of-turn-in-ordered", "ordered", [], "+taylor", False, "'cab' to approve first",
     ("cab", "rm", "cto")),
    ("in-turn-in-ordered", "ordered", ["+casey"], "+rita", True, "counted", ("cto",)),
    ("reject-after-own-approve", "all", ["+casey"], "-casey", False, "already voted",
     ("rm", "cto")),
    ("reject-by-another-counts", "all", ["+casey"], "-taylor", True, "counted", ()),
    ("last-group-completes", "all", ["+casey", "+rita"], "+taylor", True, "counted", ()),
    ("after-a-rejection", "any", ["-casey"], "+taylor", False, "already rejected", ()),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "before", "vote", "counted", "reason", "waiting"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_vote_says_whether_it_counted(
    mode: str,
    before: list[str],
    vote: str,
    counted: bool,
    reason: str,
    waiting: tuple[str, ...],
) -> None:
    earlier = _votes(*before)
    cast = Vote(vote[1:], vote[0] == "+", T0 + timedelta(minutes=30))
    effect = vote_effect([_policy(mode)], MEMBERS, earlier, cast, REQUESTER, T0)
    assert effect.counted is counted
    assert reason in effect.reason
    assert effect.waiting_on == waiting


def test_a_vote_counts_when_any_policy_in_force_counts_it() -> None:
    stage, emergency = _policy("any", ("cab",)), _policy("any", ("cto",))
    earlier = _votes("+casey")
    effect = vote_effect(
        [stage, emergency], MEMBERS, earlier, Vote("taylor", True, T0 + timedelta(hours=1)),
        REQUESTER, T0,
    )  # fmt: skip
    assert effect.counted and effect.outcome == Outcome.APPROVED
