"""Approval policies, table-driven: any / all / ordered / minimum and every edge around them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shipline.domain.approvals import Outcome, Vote, check_voter, evaluate_approvals
from shipline.domain.models import ApprovalPolicy

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
MEMBERS = {
    "cab": ["casey", "cameron", "both"],
    "rm": ["riley", "both"],
    "cto": ["taylor"],
}
REQUESTER = "riley"


def _policy(
    mode: str = "any", groups: tuple[str, ...] = ("cab", "rm", "cto"), **kw: object
) -> ApprovalPolicy:
    return ApprovalPolicy.model_validate({"groups": list(groups), "mode": mode, **kw})


def _votes(*spec: str) -> list[Vote]:
    """'+casey' approves, '-casey' rejects; one minute apart."""
    return [Vote(s[1:], s[0] == "+", T0 + timedelta(minutes=i + 1)) for i, s in enumerate(spec)]


CASES = [
    # id, policy kwargs, votes, outcome, satisfied
    ("any-one", {"mode": "any"}, ["+casey"], Outcome.APPROVED, ("cab",)),
    ("any-none", {"mode": "any"}, [], Outcome.PENDING, ()),
    ("all-partial", {"mode": "all"}, ["+casey", "+taylor"], Outcome.PENDING, ("cab", "cto")),
    (
        "all-complete",
        {"mode": "all"},
        ["+casey", "+both", "+taylor"],
        Outcome.APPROVED,
        ("cab", "rm", "cto"),
    ),
    ("all-two-from-one-group", {"mode": "all"}, ["+casey", "+cameron"], Outcome.PENDING, ("cab",)),
    (
        "one-person-one-group",
        {"mode": "all", "groups": ("cab", "rm")},
        ["+both"],
        Outcome.PENDING,
        ("cab",),
    ),
    (
        "ordered-in-order",
        {"mode": "ordered"},
        ["+casey", "+both", "+taylor"],
        Outcome.APPROVED,
        ("cab", "rm", "cto"),
    ),
    ("ordered-out-of-order", {"mode": "ordered"}, ["+taylor", "+casey"], Outcome.PENDING, ("cab",)),
    (
        "minimum-2-of-3",
        {"mode": "minimum", "minimum": 2},
        ["+taylor", "+casey"],
        Outcome.APPROVED,
        ("cto", "cab"),
    ),
    ("minimum-not-yet", {"mode": "minimum", "minimum": 2}, ["+taylor"], Outcome.PENDING, ("cto",)),
    ("reject-wins", {"mode": "all"}, ["+casey", "-taylor", "+both"], Outcome.REJECTED, ("cab",)),
    ("self-approval-refused", {"mode": "any"}, ["+riley"], Outcome.PENDING, ()),
    (
        "self-approval-allowed",
        {"mode": "any", "allow_requester": True},
        ["+riley"],
        Outcome.APPROVED,
        ("rm",),
    ),
    ("requester-may-reject", {"mode": "any"}, ["-riley"], Outcome.REJECTED, ()),
    ("non-member-refused", {"mode": "any"}, ["+mallory", "-mallory"], Outcome.PENDING, ()),
    (
        "duplicate-ignored",
        {"mode": "all", "groups": ("cab", "cto")},
        ["+casey", "+casey"],
        Outcome.PENDING,
        ("cab",),
    ),
    (
        "duplicate-cannot-flip",
        {"mode": "all", "groups": ("cab", "cto")},
        ["+casey", "-casey"],
        Outcome.PENDING,
        ("cab",),
    ),
    ("vote-after-decision", {"mode": "any"}, ["+casey", "-taylor"], Outcome.APPROVED, ("cab",)),
    ("reject-then-approve", {"mode": "any"}, ["-casey", "+taylor"], Outcome.REJECTED, ()),
]


@pytest.mark.parametrize(
    ("policy", "votes", "outcome", "satisfied"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_policy(
    policy: dict[str, object], votes: list[str], outcome: Outcome, satisfied: tuple[str, ...]
) -> None:
    decision = evaluate_approvals(
        _policy(**policy), MEMBERS, _votes(*votes), REQUESTER, T0, T0 + timedelta(hours=1)
    )
    assert decision.outcome == outcome, decision.reason
    assert decision.satisfied == satisfied


def test_refusals_and_ignores_say_why() -> None:
    decision = evaluate_approvals(
        _policy("ordered"),
        MEMBERS,
        _votes("+mallory", "+riley", "+taylor", "+casey", "+casey"),
        REQUESTER,
        T0,
        T0 + timedelta(hours=1),
    )
    reasons = [why for _, why in decision.refused]
    assert "not in any approver group" in reasons[0]
    assert "requested this run" in reasons[1]
    assert "waiting for 'cab' to approve first" in reasons[2]
    assert [why for _, why in decision.ignored] == ["'casey' already voted"]
    assert decision.waiting_on == ("rm", "cto")


def test_timeout() -> None:
    policy = _policy("all", timeout_minutes=60)
    late = [Vote("casey", True, T0 + timedelta(minutes=61))]
    before = evaluate_approvals(policy, MEMBERS, [], REQUESTER, T0, T0 + timedelta(minutes=59))
    after = evaluate_approvals(policy, MEMBERS, late, REQUESTER, T0, T0 + timedelta(minutes=61))
    assert before.outcome == Outcome.PENDING
    assert after.outcome == Outcome.TIMED_OUT
    assert after.ignored[0][1] == "after the approval timed out"
    assert after.deadline == T0 + timedelta(minutes=60)


def test_default_timeout_is_a_day() -> None:
    policy = _policy("any")
    assert policy.timeout_minutes == 1440
    decision = evaluate_approvals(policy, MEMBERS, [], REQUESTER, T0, T0 + timedelta(minutes=1440))
    assert decision.outcome == Outcome.TIMED_OUT


def test_check_voter() -> None:
    policy = _policy("any")
    assert check_voter(policy, MEMBERS, "casey", REQUESTER) is None
    assert "not in any approver group" in (check_voter(policy, MEMBERS, "eve", REQUESTER) or "")
    assert "may not approve" in (check_voter(policy, MEMBERS, "riley", REQUESTER) or "")
