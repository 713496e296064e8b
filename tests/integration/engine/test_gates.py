"""Approvals, business-hours windows and locks on the durable engine."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shipline.errors import PermissionDenied, UserError
from tests.engine_harness import Engine

APPROVERS = {"cab": ["casey", "cameron"], "rm": ["riley"], "cto": ["taylor"]}


def _gated(policy: dict[str, Any], **stage: Any) -> list[dict[str, Any]]:
    return [{"name": "deploy", "approval": policy, "steps": [{"name": "apply"}], **stage}]


def test_approval_any_then_runs(engine: Engine) -> None:
    run = engine.start(_gated({"groups": ["cab", "rm"]}), approvers=APPROVERS, actor="riley")
    engine.wait_stage(run.id, "deploy", "waiting")
    assert engine.store.get_run(run.id).phase == "waiting"  # type: ignore[union-attr]
    with pytest.raises(PermissionDenied, match="requested this run"):
        engine.service.vote(run.id, "riley", approve=True)
    with pytest.raises(PermissionDenied, match="not in any approver group"):
        engine.service.vote(run.id, "mallory", approve=True)
    engine.service.vote(run.id, "casey", approve=True, comment="ok")
    assert engine.wait(run.id).phase == "succeeded"
    actions = [
        r["action"] for r in engine.runtime.audit.records() if r["details"].get("run") == run.id
    ]
    assert actions.count("approval.refused") == 2 and "approval.approve" in actions


def test_approval_all_needs_every_group(engine: Engine) -> None:
    run = engine.start(_gated({"groups": ["cab", "cto"], "mode": "all"}), approvers=APPROVERS)
    engine.wait_stage(run.id, "deploy", "waiting")
    engine.service.vote(run.id, "casey", approve=True)
    time.sleep(0.3)
    assert engine.store.get_run(run.id).phase == "waiting"  # type: ignore[union-attr]
    engine.service.vote(run.id, "taylor", approve=True)
    assert engine.wait(run.id).phase == "succeeded"


def test_reject_fails_the_stage(engine: Engine) -> None:
    run = engine.start(_gated({"groups": ["cab"]}), approvers=APPROVERS)
    engine.wait_stage(run.id, "deploy", "waiting")
    engine.service.vote(run.id, "cameron", approve=False, comment="not today")
    done = engine.wait(run.id)
    assert done.phase == "failed"
    assert "rejected by cameron" in (done.reason or "")
    with pytest.raises(UserError, match="already ended"):
        engine.service.vote(run.id, "casey", approve=True)


def test_approval_timeout(engine: Engine) -> None:
    clock = _Clock()
    engine.runtime.clock = clock
    try:
        run = engine.start(_gated({"groups": ["cab"], "timeoutMinutes": 1}), approvers=APPROVERS)
        engine.wait_stage(run.id, "deploy", "waiting")
        clock.advance(timedelta(minutes=2))
        done = engine.wait(run.id)
    finally:
        engine.runtime.clock = lambda: datetime.now(UTC)
    assert done.phase == "failed"
    assert "timed out" in (done.reason or "")


class _Clock:
    """A clock the test moves; the engine reads time only through its runtime clock."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.now

    def advance(self, delta: timedelta) -> None:
        with self.lock:
            self.now += delta


WINDOW = {
    "timezone": "America/New_York",
    "windows": ["Mon-Thu 09:00-16:00"],
    "emergency": {"groups": ["cto"]},
}
# The fake clock is the coming Saturday, 15:00 UTC (10:00 or 11:00 in New York), never a past
# one: a vote is stamped with the real time, and one more than a day after a fake past
# Saturday would be late for the emergency approval (`timeoutMinutes` 1440) and never count.
_DAYS_TO_SATURDAY = (5 - datetime.now(UTC).weekday()) % 7 or 7
SATURDAY = (datetime.now(UTC) + timedelta(days=_DAYS_TO_SATURDAY)).replace(
    hour=15, minute=0, second=0, microsecond=0
)
MONDAY = SATURDAY + timedelta(days=2)


def test_window_waits_until_it_opens(engine: Engine) -> None:
    clock = _Clock(SATURDAY)
    engine.runtime.clock = clock
    try:
        run = engine.start([{"name": "deploy", "window": WINDOW, "steps": [{"name": "apply"}]}])
        engine.wait_stage(run.id, "deploy", "waiting")
        assert any(
            f"next window opens Mon {MONDAY:%Y-%m-%d} 09:00" in e["message"]
            for e in engine.store.events(run.id)
        )
        clock.advance(timedelta(days=2))  # Monday 10:00 EST
        done = engine.wait(run.id)
    finally:
        engine.runtime.clock = lambda: datetime.now(UTC)
    assert done.phase == "succeeded"


def test_window_fail_and_emergency_override(engine: Engine) -> None:
    clock = _Clock(SATURDAY)
    engine.runtime.clock = clock
    try:
        failing = engine.start(
            [{"name": "deploy", "window": {**WINDOW, "outside": "fail"}, "steps": [{"name": "a"}]}]
        )
        assert engine.wait(failing.id).phase == "failed"
        urgent = engine.start(
            [{"name": "deploy", "window": WINDOW, "steps": [{"name": "a"}]}],
            approvers=APPROVERS,
            emergency_reason="payment outage INC-42",
        )
        engine.wait_stage(urgent.id, "deploy", "waiting")
        with pytest.raises(PermissionDenied):
            engine.service.vote(urgent.id, "casey", approve=True)
        engine.service.vote(urgent.id, "taylor", approve=True)
        assert engine.wait(urgent.id).phase == "succeeded"
    finally:
        engine.runtime.clock = lambda: datetime.now(UTC)
    audit = [r for r in engine.runtime.audit.records() if r["details"].get("run") == urgent.id]
    assert [r["action"] for r in audit][:2] == ["run.start", "run.emergency"]


def _locked(
    key: str,
    policy: str = "sequential",
    seconds: float = 0.4,
    approval: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    stage: dict[str, Any] = {
        "name": "deploy",
        "locks": [key],
        "lockPolicy": policy,
        "steps": [{"name": "apply", "action": "wait", "params": {"seconds": seconds}}],
    }
    if approval:
        stage["approval"] = approval
    return [stage]


def _intervals(engine: Engine, run_id: int) -> tuple[datetime, datetime]:
    step = engine.store.steps(run_id)[0]
    return step["started_at"], step["finished_at"]


def test_same_key_never_overlaps_and_other_keys_run_in_parallel(engine: Engine) -> None:
    same = [engine.start(_locked("qa/api", seconds=1.0)) for _ in range(3)]
    other = engine.start(_locked("qa/web"))
    for run in [*same, other]:
        assert engine.wait(run.id).phase == "succeeded"
    spans = sorted(_intervals(engine, r.id) for r in same)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "two runs held qa/api at once"
    web_start, web_end = _intervals(engine, other.id)
    assert any(start < web_end and web_start < end for start, end in spans), (
        "qa/web waited for qa/api"
    )
    assert engine.store.lock_holders() == [] or all(
        e["key"] not in {"qa/api", "qa/web"} for e in engine.store.lock_holders()
    )


def test_latest_only_supersedes_waiting_runs_also_during_approval(engine: Engine) -> None:
    policy = {"groups": ["cab"]}
    first = engine.start(_locked("live/api", "latest-only", 1.0))
    engine.wait_stage(first.id, "deploy", "running")
    time.sleep(0.2)  # first holds the lock
    waiting_for_approval = engine.start(
        _locked("live/api", "latest-only", approval=policy), approvers=APPROVERS
    )
    engine.wait_stage(waiting_for_approval.id, "deploy", "waiting")
    newest = engine.start(_locked("live/api", "latest-only"))
    superseded = engine.wait(waiting_for_approval.id)
    assert superseded.phase == "cancelled"
    assert f"superseded by run {newest.id}" in (superseded.cancel_reason or "")
    assert engine.wait(first.id).phase == "succeeded"  # a holder is never pre-empted
    assert engine.wait(newest.id).phase == "succeeded"


def test_inside_business_hours_only_the_stage_approvers_count(engine: Engine) -> None:
    """An emergency run inside its window waits for the stage's approvers only: a member of the
    emergency group alone is refused (the vote would not count), as the run decides."""
    clock = _Clock(MONDAY)  # 10:00 (or 11:00) in New York
    engine.runtime.clock = clock
    try:
        run = engine.start(
            [{"name": "deploy", "window": WINDOW, "approval": {"groups": ["cab"]},
              "steps": [{"name": "a"}]}],
            approvers={**APPROVERS, "cab": ["casey"]},
            emergency_reason="not needed: the window is open",
        )  # fmt: skip
        engine.wait_stage(run.id, "deploy", "waiting")
        with pytest.raises(PermissionDenied, match="not in any approver group"):
            engine.service.vote(run.id, "taylor", approve=True)  # emergency group only
        engine.service.vote(run.id, "casey", approve=True)
        assert engine.wait(run.id).phase == "succeeded"
    finally:
        engine.runtime.clock = lambda: datetime.now(UTC)
