"""Approval decisions: given a policy, the groups' members and the votes so far, what now?

Pure: the caller loads the votes and the clock, this decides, the engine acts.

Rules, in vote order:
- only members of the policy's groups may vote; others are refused;
- the requester may not approve their own run unless the policy allows it (rejecting is allowed);
- a user's first vote counts, later ones are ignored as duplicates;
- one approval satisfies one group: the first not yet satisfied group (in policy order) that the
  user belongs to, so "all of CAB, Release Manager" needs two people even if one is in both;
- in `ordered` mode a group can only approve once the groups before it have;
- any counted rejection rejects; votes after the decision or after the deadline are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from shipline.domain.models import ApprovalMode, ApprovalPolicy


class Outcome(StrEnum):
    """Where an approval stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed-out"


@dataclass(frozen=True)
class Vote:
    """One person's decision on a stage."""

    user: str
    approve: bool
    at: datetime
    comment: str | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome and why; `refused` and `ignored` explain votes that did not count."""

    outcome: Outcome
    reason: str
    satisfied: tuple[str, ...] = ()
    waiting_on: tuple[str, ...] = ()
    counted: tuple[Vote, ...] = ()
    refused: tuple[tuple[Vote, str], ...] = field(default=())
    ignored: tuple[tuple[Vote, str], ...] = field(default=())
    deadline: datetime | None = None


def _needed(policy: ApprovalPolicy) -> int:
    if policy.mode == ApprovalMode.ANY:
        return 1
    if policy.mode == ApprovalMode.MINIMUM:
        return policy.minimum or 1
    return len(policy.groups)


def policies_in_force(
    approval: ApprovalPolicy | None, emergency: ApprovalPolicy | None, *, overridden: bool
) -> list[ApprovalPolicy]:
    """The approval policies a stage waits on: its own, plus the emergency approvals only when
    the business-hours window was overridden by an emergency (built once; the run records it
    and votes are checked against that record)."""
    policies = [approval] if approval is not None else []
    if overridden and emergency is not None:
        policies.append(emergency)
    return policies


def check_voter(
    policy: ApprovalPolicy, members: Mapping[str, Sequence[str]], user: str, requester: str
) -> str | None:
    """Why `user` may not approve under `policy`, or None when they may."""
    if not any(user in members.get(group, ()) for group in policy.groups):
        return f"'{user}' is not in any approver group of this stage ({', '.join(policy.groups)})"
    if user == requester and not policy.allow_requester:
        return f"'{user}' requested this run and may not approve it"
    return None


def _refusal(
    policy: ApprovalPolicy, members: Mapping[str, Sequence[str]], vote: Vote, requester: str
) -> str | None:
    if vote.approve:
        return check_voter(policy, members, vote.user, requester)
    if any(vote.user in members.get(g, ()) for g in policy.groups):
        return None  # any approver may reject, the requester included
    return f"'{vote.user}' is not in any approver group of this stage"


def _pending(
    policy: ApprovalPolicy, expired: bool, left: int, waiting: tuple[str, ...]
) -> tuple[Outcome, str]:
    if expired:
        return Outcome.TIMED_OUT, f"no decision within {policy.timeout_minutes} minutes"
    return Outcome.PENDING, f"waiting for {left} more approval(s) from {', '.join(waiting)}"


def evaluate_approvals(
    policy: ApprovalPolicy,
    members: Mapping[str, Sequence[str]],
    votes: Sequence[Vote],
    requester: str,
    requested_at: datetime,
    now: datetime,
) -> Decision:
    """Decide an approval stage from its votes at `now`."""
    deadline = requested_at + timedelta(minutes=policy.timeout_minutes)
    needed = _needed(policy)
    satisfied: list[str] = []
    counted: list[Vote] = []
    refused: list[tuple[Vote, str]] = []
    ignored: list[tuple[Vote, str]] = []
    voted: set[str] = set()
    outcome, reason = Outcome.PENDING, ""
    for vote in sorted(votes, key=lambda v: v.at):
        if outcome != Outcome.PENDING:
            ignored.append((vote, f"the stage was already {outcome.value}"))
            continue
        if vote.at >= deadline:
            ignored.append((vote, "after the approval timed out"))
            continue
        if vote.user in voted:
            ignored.append((vote, f"'{vote.user}' already voted"))
            continue
        why = _refusal(policy, members, vote, requester)
        if why:
            refused.append((vote, why))
            continue
        if not vote.approve:
            voted.add(vote.user)
            counted.append(vote)
            outcome, reason = Outcome.REJECTED, f"rejected by {vote.user}"
            continue
        open_groups = [g for g in policy.groups if g not in satisfied]
        if policy.mode == ApprovalMode.ORDERED:
            open_groups = open_groups[:1]
        group = next((g for g in open_groups if vote.user in members.get(g, ())), None)
        if group is None:
            if policy.mode == ApprovalMode.ORDERED and open_groups:
                refused.append((vote, f"waiting for '{open_groups[0]}' to approve first"))
            else:
                ignored.append((vote, f"the groups of '{vote.user}' have already approved"))
            continue
        voted.add(vote.user)
        counted.append(vote)
        satisfied.append(group)
        if len(satisfied) >= needed:
            outcome = Outcome.APPROVED
            reason = "approved by " + ", ".join(v.user for v in counted if v.approve)
    waiting = tuple(g for g in policy.groups if g not in satisfied)
    if outcome == Outcome.PENDING:
        outcome, reason = _pending(policy, now >= deadline, needed - len(satisfied), waiting)
    return Decision(
        outcome=outcome,
        reason=reason,
        satisfied=tuple(satisfied),
        waiting_on=waiting if outcome == Outcome.PENDING else (),
        counted=tuple(counted),
        refused=tuple(refused),
        ignored=tuple(ignored),
        deadline=deadline,
    )


@dataclass(frozen=True)
class VoteEffect:
    """What one more vote does: whether it counts (and if not, why), and who is still needed."""

    counted: bool
    reason: str
    outcome: Outcome
    waiting_on: tuple[str, ...] = ()
    stage: str = ""  # set by whoever knows which stage was voted on


def vote_effect(
    policies: Sequence[ApprovalPolicy],
    members: Mapping[str, Sequence[str]],
    votes: Sequence[Vote],
    vote: Vote,
    requester: str,
    opened: datetime,
) -> VoteEffect:
    """What `vote`, cast after `votes`, does to a stage waiting on `policies` since `opened`.

    It counts when at least one policy counts it; otherwise the reason says why not (already
    voted, the group already approved, out of turn, not an approver, after the decision)."""
    decisions = [
        evaluate_approvals(p, members, [*votes, vote], requester, opened, vote.at) for p in policies
    ]
    counted = any(any(v is vote for v in d.counted) for d in decisions)
    reasons: list[str] = []
    for decision in decisions:
        for other, why in (*decision.refused, *decision.ignored):
            if other is vote and why not in reasons:
                reasons.append(why)
    outcomes = {d.outcome for d in decisions}
    outcome = next(
        (o for o in (Outcome.REJECTED, Outcome.TIMED_OUT, Outcome.PENDING) if o in outcomes),
        Outcome.APPROVED,
    )
    waiting = tuple(dict.fromkeys(g for d in decisions for g in d.waiting_on))
    reason = "counted" if counted else "; ".join(reasons) or "it changes nothing"
    return VoteEffect(counted, reason, outcome, waiting if outcome == Outcome.PENDING else ())
