"""The durable run workflow, on DBOS.

A run is one DBOS workflow (id `shipline-run-N`). Everything that touches the world or the
clock is a DBOS step, so a worker killed at any moment resumes where it was and no completed
step runs again. People and other runs reach a waiting run through its inbox (`DBOS.send`):
votes, cancellation, "the lock is free". Decisions are the domain's pure functions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dbos import DBOS

from shipline.domain.approvals import (
    Decision,
    Outcome,
    Vote,
    evaluate_approvals,
    policies_in_force,
)
from shipline.domain.checks import (
    QueuedRun,
    Verdict,
    assess_lock,
    check_window,
    latest_waiting,
)
from shipline.domain.events import EventKind, RunEvent
from shipline.domain.models import ApprovalPolicy, BusinessHours, LockPolicy
from shipline.domain.pipeline import (
    Phase,
    PipelineSpec,
    StageSpec,
    StepSpec,
    dependencies,
    ends_after,
    followers,
    run_phase,
    should_run,
    stage_order,
)
from shipline.domain.retry import backoff_delay
from shipline.doorbell import ring_followers
from shipline.engine import ci_actions, deploy_actions, gates, infra_actions  # noqa: F401 - register actions
from shipline.engine.actions import (
    Behind,
    StepCancelled,
    StepContext,
    StepTimedOut,
    begins_early,
    find_action,
    passed_on,
)
from shipline.engine.canary import CanaryCancelled as _Cancelled
from shipline.engine.canary import drive_canary
from shipline.engine.failpoints import failpoint
from shipline.engine.logwriter import step_logger
from shipline.engine.notifications import deliver
from shipline.engine.runs import wake_run
from shipline.engine.runtime import INBOX, WORKFLOW_NAME, current, log
from shipline.errors import RuleError, ShiplineError, Withdrawn


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- steps: every effect on the world and every reading of the clock -------------------------


@DBOS.step(name="shipline.now")
def _now() -> str:
    return _iso(current().clock())


@DBOS.step(name="shipline.load")
def _load(run_id: int) -> dict[str, Any]:
    """The run as submitted; a continuation (a segment after the first) also takes the parked
    run over here (`resumed`: what its stages recorded, None if another segment has it)."""
    record = current().store.get_run(run_id)
    if record is None:
        raise ShiplineError(f"run {run_id} is not in the state store")
    loaded = {"spec": record.spec, "params": record.params, "cancel": record.cancel_requested,
              "workflow": record.workflow_id}  # fmt: skip
    if DBOS.workflow_id != record.workflow_id:
        loaded["resumed"] = _take_over(run_id)
    else:  # the first segment: the run begins here (the same step: one checkpoint, not two)
        spec = PipelineSpec.model_validate(record.spec)
        lock_sets = [sorted(s.locks) for s in spec.stages if s.locks]
        latest = sorted(
            {k for s in spec.stages if s.lock_policy == LockPolicy.LATEST_ONLY for k in s.locks}
        )
        _begin(run_id, lock_sets, latest)
    return loaded


def _announce(
    run_id: int,
    kind: EventKind,
    *,
    stage: str | None = None,
    reason: str | None = None,
    approve: str | None = None,
    report: str | None = None,
) -> None:
    rt = current()
    notifiers = rt.notifiers(kind)
    if not notifiers:
        return
    record = rt.store.get_run(run_id, spec=False)
    if record is None:
        return
    event = RunEvent(
        kind=kind,
        run_id=str(run_id),
        pipeline=record.pipeline,
        environment=record.environment or "-",
        actor=record.requested_by,
        at=rt.clock(),
        services=record.services,
        stage=stage,
        reason=reason,
        approve_command=approve,
        report=report,
    )
    deliver(list(notifiers), event, rt.masker, backoff=rt.notify_backoff_seconds)


def _begin(run_id: int, lock_sets: list[list[str]], latest_only: list[str]) -> None:
    """Record the run's start (once: its first start time stays), register its interest in
    its locks (superseding older runs under `latest-only`) and announce it."""
    rt = current()
    store = rt.store
    record = store.get_run(run_id, spec=False)
    if record is not None and record.started_at is not None:
        started = record.started_at
    else:
        started = rt.clock()
    store.record(
        run_id, "run.started", "run started", run_values={"phase": "running", "started_at": started}
    )
    keys = sorted({k for keys in lock_sets for k in keys})
    if keys:
        with store.lock_transaction(keys) as conn:
            store.set_lock_state(conn, run_id, keys, "interested")
            superseded: dict[int, int] = {}  # victim -> the newer run that replaces it
            every = store.lock_entries_of(conn, latest_only) if latest_only else {}
            for key in latest_only:
                entries = every.get(key, [])
                queue = [
                    QueuedRun(
                        str(e["run_id"]),
                        e["registered_at"],
                        e["state"] == "holding",
                        e["requested_at"],
                    )
                    for e in entries
                ]
                newest = latest_waiting(queue)
                for older in assess_lock(LockPolicy.LATEST_ONLY, queue).superseded:
                    superseded[int(older)] = int(newest or run_id)
        # This run too, when a newer one was submitted before a worker took this one.
        for victim, by in sorted(superseded.items()):
            _supersede(victim, by)
    _announce(run_id, EventKind.STARTED)


def _supersede(victim: int, by: int) -> None:
    rt = current()
    if rt.store.request_cancel(victim, f"superseded by run {by} (latest-only)"):
        rt.store.record(victim, "run.superseded", f"superseded by run {by}")
        rt.audit.append("shipline", "run.superseded", run=victim, by=by)
        _wake(victim, {"type": "cancel"})


class _WorkerQueue:
    """How a worker reaches another run: its continuation queued, or a message sent."""

    def enqueue(self, workflow_id: str, run_id: int) -> None:
        enqueue = current().enqueue
        if enqueue is None:
            raise ShiplineError("the engine was launched without a way to queue runs")
        enqueue(workflow_id, run_id)

    def send(self, workflow_id: str, message: dict[str, Any], topic: str) -> None:
        DBOS.send(workflow_id, message, topic)

    def ring(self) -> None:
        """A worker's own scheduler looks at its next pass."""


def _wake(run_id: int, message: dict[str, Any]) -> None:
    try:
        wake_run(current().store, _WorkerQueue(), run_id, message)
    except Exception as exc:  # a run that already ended has nothing to wake
        log.debug("could not wake run %s: %s", run_id, exc)


class _Parked(Exception):
    """The run waits (people, a window, a lock) without a worker: this segment ends here."""


@DBOS.step(name="shipline.park")
def _park(run_id: int, stage: str, until: str | None, seconds: float | None = None) -> str:
    """Park the run at `stage` until something wakes it, or `until`, or `seconds` from now:
    'parked', 'woken' (look again) or 'gone' (this segment no longer owns the run)."""
    rt = current()
    wake = _parse(until) if until else None
    if seconds is not None:
        wake = rt.clock() + timedelta(seconds=seconds)
    return rt.store.park(run_id, str(DBOS.workflow_id), stage, wake)


def _wait_parked(
    run_id: int, stage: str, until: datetime | None, *, seconds: float | None = None
) -> None:
    """Return when something may have changed (woken while deciding); otherwise end the
    segment: the run is parked and holds no thread, no poll."""
    outcome = _park(run_id, stage, _iso(until) if until else None, seconds)
    if outcome == "cancelled":
        raise _Cancelled()
    if outcome != "woken":
        raise _Parked(outcome)


def _take_over(run_id: int) -> dict[str, Any] | None:
    """Take over a parked run: the stages it recorded (None: another segment has it). A stage
    that waits for approvals also carries the first look at its votes (`look`, as
    `_approval_state` gives it): the continuation decides on it without a step of its own."""
    store = current().store
    if not store.resume(run_id, str(DBOS.workflow_id)):
        return None
    record = store.get_run(run_id, spec=False)
    stages = {s["name"]: {"phase": s["phase"], "reason": s["reason"],
                          "outputs": s["outputs"] or {},
                          "finished": s["finished_at"] is not None}
              for s in store.stages(run_id)}  # fmt: skip
    for name, stage in stages.items():
        if stage["phase"] == "waiting" and "approvalPolicies" in stage["outputs"]:
            stage["look"] = _look_at_votes(run_id, name)
    return {"stages": stages, "cancel": bool(record and record.cancel_requested)}


@DBOS.step(name="shipline.stage")
def _stage_event(
    run_id: int,
    stage: str,
    position: int,
    phase: str,
    message: str,
    outputs: dict[str, Any] | None = None,
) -> None:
    _record_stage(run_id, stage, position, phase, message, outputs)


def _record_stage(
    run_id: int,
    stage: str,
    position: int,
    phase: str,
    message: str,
    outputs: dict[str, Any] | None = None,
    recorded: list[dict[str, Any]] | None = None,
) -> None:
    """Record that a stage started or ended, once: a stage recorded before a crash (as
    `recorded`, the run's stages as just read, says; read here for an end) is left as it is."""
    rt = current()
    again = False
    if phase == Phase.RUNNING:
        again = recorded is not None and any(s["name"] == stage for s in recorded)
    elif Phase(phase).done:
        rows = recorded if recorded is not None else rt.store.stages(run_id)
        again = any(
            s["name"] == stage and s["phase"] == phase and s["finished_at"] is not None
            for s in rows
        )
    if again:
        return  # recorded before a crash: once is enough
    values: dict[str, Any] = {"position": position, "phase": phase, "reason": message}
    now = rt.clock()
    if phase == Phase.RUNNING:
        values["started_at"] = now
    elif Phase(phase).done:
        values["finished_at"] = now
        values["outputs"] = outputs or {}
    rt.store.record(run_id, f"stage.{phase}", message, stage=stage, stage_values=values)
    _moved(run_id)


def _moved(run_id: int, *, ended: bool = False) -> None:
    """Wake the commands of this machine that follow run `run_id`: it moved (`ended`: it
    ended)."""
    state_dir = getattr(current().workspace, "state_dir", None)
    if state_dir is not None:
        ring_followers(state_dir, run_id, ended=ended)


@DBOS.step(name="shipline.window")
def _window(run_id: int, stage: str, window: dict[str, Any], emergency: bool) -> dict[str, Any]:
    hours = BusinessHours.model_validate(window)
    verdict = check_window(hours, current().clock(), ZoneInfo(hours.timezone), emergency=emergency)
    opens = _iso(verdict.opens_at) if verdict.opens_at else None
    current().store.record(
        run_id, f"check.window.{verdict.verdict.value}", verdict.reason, stage=stage
    )
    return {"verdict": verdict.verdict.value, "reason": verdict.reason, "opens": opens}


@DBOS.step(name="shipline.waiting")
def _waiting(
    run_id: int,
    stage: str,
    position: int,
    reason: str,
    approve: str | None,
    policies: list[dict[str, Any]] | None = None,
) -> None:
    rt = current()
    values: dict[str, Any] = {"position": position, "phase": "waiting", "reason": reason}
    if policies is not None:  # what votes are checked against while the stage waits
        values["outputs"] = {"approvalPolicies": policies, "approvalOpened": _iso(rt.clock())}
    rt.store.record(
        run_id,
        "stage.waiting",
        reason,
        stage=stage,
        stage_values=values,
        run_values={"phase": "waiting"},
    )
    _moved(run_id)
    _announce(run_id, EventKind.WAITING, stage=stage, reason=reason, approve=approve)


@DBOS.step(name="shipline.still-waiting")
def _still_waiting(run_id: int, stage: str, position: int, reason: str) -> None:
    """A counted vote changed who is still needed: the stage's reason says so (no new
    announcement: the stage was announced once when it began to wait)."""
    current().store.record(
        run_id,
        "stage.waiting",
        reason,
        stage=stage,
        stage_values={"position": position, "phase": "waiting", "reason": reason},
    )


@DBOS.step(name="shipline.resumed")
def _resumed(run_id: int, stage: str, position: int, reason: str) -> None:
    _record_resumed(run_id, stage, position, reason)


def _record_resumed(run_id: int, stage: str, position: int, reason: str) -> None:
    current().store.record(
        run_id,
        "stage.running",
        reason,
        stage=stage,
        stage_values={"position": position, "phase": "running", "reason": reason},
        run_values={"phase": "running"},
    )


@DBOS.step(name="shipline.lock")
def _lock_try(
    run_id: int,
    keys: list[str],
    policy: str,
    begin: tuple[str, int] | None = None,
    resumed: tuple[str, int, str] | None = None,
) -> str:
    """`_take_locks` as a durable step of its own (a stage whose steps are not one step)."""
    return _take_locks(run_id, keys, policy, begin, resumed)


def _take_locks(
    run_id: int,
    keys: list[str],
    policy: str,
    begin: tuple[str, int] | None = None,
    resumed: tuple[str, int, str] | None = None,
    recorded: list[dict[str, Any]] | None = None,
) -> str:
    """Queue for `keys` and take them when this run is first in line for all; 'held',
    'queued' or 'cancelled'. `begin`: the stage (name, position) whose start is recorded
    first (a stage with no window or approvals before its locks); `resumed`: the stage (name,
    position, why) that goes on after its approvals, recorded first while the run still waits;
    `recorded`: the run's stages, when just read."""
    rt = current()
    store = rt.store
    if begin is not None:
        _record_stage(run_id, begin[0], begin[1], Phase.RUNNING, "stage started", None,
                      recorded if recorded is not None else store.stages(run_id))  # fmt: skip
    record = store.get_run(run_id, spec=False)
    if resumed is not None and record is not None and record.phase == "waiting":
        _record_resumed(run_id, *resumed)  # once: the run is no longer waiting after it
    if record is None or record.cancel_requested:
        return "cancelled"
    superseded: set[int] = set()
    with store.lock_transaction(keys) as conn:
        store.set_lock_state(conn, run_id, keys, "queued")
        granted = True
        every = store.lock_entries_of(conn, keys)
        for key in keys:
            entries = [e for e in every.get(key, []) if e["state"] != "interested"]
            queue = [
                QueuedRun(
                    str(e["run_id"]), e["queued_at"], e["state"] == "holding", e["requested_at"]
                )
                for e in entries
            ]
            decision = assess_lock(LockPolicy(policy), queue)
            superseded |= {int(r) for r in decision.superseded}
            holder = next((e["run_id"] for e in entries if e["state"] == "holding"), None)
            if holder == run_id:
                continue
            granted = granted and decision.grant == str(run_id)
        if granted and run_id not in superseded:
            store.set_lock_state(conn, run_id, keys, "holding")
    for other in sorted(superseded - {run_id}):
        _supersede(other, run_id)
    if run_id in superseded:
        return "cancelled"
    if granted:
        store.record(run_id, "lock.acquired", "holding " + ", ".join(keys))
        return "held"
    return "queued"


@DBOS.step(name="shipline.unlock")
def _unlock(run_id: int) -> None:
    _leave_locks(run_id)


def _leave_locks(run_id: int) -> None:
    """Release every lock the run holds; the runs waiting for them are woken."""
    waiting = current().store.leave_locks(run_id)
    for other in waiting:
        if other != run_id:
            _wake(other, {"type": "lock"})


# What the stages before a stage left to record (`passed`: the stages passed over) and whether
# the locks they kept are to be released: done in that stage's first durable step, when it has
# one before any wait (`_absorbs`), rather than in a step each.
_Owed = tuple[list[tuple[str, int, str, str]], bool]


def _settle(run_id: int, owed: _Owed, recorded: list[dict[str, Any]]) -> None:
    """Do what `owed` says, in the step that calls this (`recorded`: the run's stages, as it
    just read them: a stage recorded before a crash is left as it is)."""
    passed, unlock = owed
    for name, position, ended, why in passed:
        _record_stage(run_id, name, position, ended, why, None, recorded)
    if unlock:
        _leave_locks(run_id)


@DBOS.step(name="shipline.approval")
def _approval_state(run_id: int, stage: str) -> dict[str, Any]:
    """The votes recorded for the stage, oldest first, and the time they were read (once per
    look, durably)."""
    return _look_at_votes(run_id, stage)


def _look_at_votes(run_id: int, stage: str) -> dict[str, Any]:
    rows = current().store.votes(run_id, stage)
    votes = [
        {"user": r["user"], "approve": r["approve"], "at": _iso(r["at"]), "comment": r["comment"]}
        for r in rows
    ]
    return {"votes": votes, "now": _iso(current().clock())}


@DBOS.step(name="shipline.step")
def _execute(
    run_id: int,
    stage: str,
    position: int,
    step: dict[str, Any],
    inputs: dict[str, dict[str, Any]],
    attempt: int = 1,
) -> dict[str, Any]:
    """One attempt of a step, durable on its own: a worker killed between attempts resumes with
    the next one, after the rest of the backoff. `final` says whether the step ended."""
    spec = StepSpec.model_validate(step)
    row = current().store.step(run_id, stage, spec.name)
    done = _recorded_outcome(row)
    if done is not None:
        return done  # ran to its end before a crash: its recorded outcome is the outcome
    again = row is not None and row["attempts"] == attempt and row["phase"] == "running"
    return _attempt(run_id, stage, position, spec, inputs, attempt, again=again)


def _batchable(step: StepSpec) -> bool:
    """Whether a step can run inside a stage's batch: an action tried once (a timer, a canary
    and a step with retries need the workflow's own durable waits between their parts)."""
    return step.kind == "action" and step.retry.attempts == 1


@DBOS.step(name="shipline.steps")
def _execute_steps(
    run_id: int,
    stage: str,
    steps: list[tuple[int, dict[str, Any]]],
    inputs: dict[str, dict[str, Any]],
    parallel: int = 1,
) -> list[dict[str, Any]]:
    """Several once-tried steps of a stage (`_batchable`) as one durable step (`_run_steps`)."""
    return _run_steps(run_id, stage, steps, inputs, parallel)


@dataclass(frozen=True)
class _Cues:
    """What a step's `StepContext` says to, or gives, in a one-after-another stage (`_Turns`):
    its hand-on, its `acting`, the step it is `behind`. Elsewhere, none of them."""

    hand_on: Callable[[], None] = lambda: None
    acting: Callable[[str], None] = lambda change: None
    behind: Behind | None = None


_NO_CUES = _Cues()
_MADE = {"phase": Phase.SUCCEEDED.value, "outputs": {}}  # a step that handed on, as `then` hears

# how a batch acts out one of its steps: (position, step) and its cues
_Step = Callable[[tuple[int, dict[str, Any]], _Cues], dict[str, Any]]


def _run_steps(
    run_id: int,
    stage: str,
    steps: list[tuple[int, dict[str, Any]]],
    inputs: dict[str, dict[str, Any]],
    parallel: int,
    then: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run steps one after another until one does not succeed, or `parallel` at a time, every
    one run. The state store's record of a step's outcome is each step's commit point, as for a
    step on its own: after a crash the batch runs again, and a step with a recorded outcome
    returns it instead of acting again. `then(index, result)` is told each step's result (in
    the step's thread) as soon as it has it; a step that hands on, its success then (its
    effect made and succeeded), and its result again once it ended."""
    act = _stepper(run_id, stage, inputs)
    where = {id(item): index for index, item in enumerate(steps)}

    def one(item: tuple[int, dict[str, Any]], cues: _Cues = _NO_CUES) -> dict[str, Any]:
        index = where[id(item)]
        if then is not None and cues is not _NO_CUES:
            handed = cues.hand_on

            def hand_on() -> None:
                handed()  # the next step acted: what follows this one does not hold it up
                then(index, _MADE)

            cues = replace(cues, hand_on=hand_on)
        result = act(item, cues)
        if then is not None:
            then(index, result)
        return result

    if parallel <= 1:
        return _in_turn(steps, one, current().actions)
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="shipline-stage") as pool:
        return list(pool.map(one, steps))


def _stepper(run_id: int, stage: str, inputs: dict[str, dict[str, Any]]) -> _Step:
    """How a stage's batch acts out one of its steps: an outcome recorded before (a crash) is
    returned as it is, else the step is attempted (again, when it had begun)."""
    recorded = {row["name"]: row for row in current().store.steps(run_id) if row["stage"] == stage}

    def one(item: tuple[int, dict[str, Any]], cues: _Cues = _NO_CUES) -> dict[str, Any]:
        position, step = item
        spec = StepSpec.model_validate(step)
        row = recorded.get(spec.name)
        if row is not None and row["finished_at"] is not None and Phase(row["phase"]).done:
            return {"phase": row["phase"], "outputs": row["outputs"] or {},
                    "error": row["error"], "final": True}  # fmt: skip
        return _attempt(run_id, stage, position, spec, inputs, 1, again=row is not None, cues=cues)

    return one


# a stage streamed after another one (`StageSpec.follows`): its name, position, steps (with
# their positions) and how many of them run at once
_Follower = tuple[str, int, list[tuple[int, dict[str, Any]]], int]


class _Streamed:
    """The steps of a follower stage, each begun (`parallel` at a time) as soon as its leader's
    like-named step succeeded (handed on, or ended so), while the leader's other steps go on
    (`begin`); then the rest and the stage's end (`finish`). The follower's start is recorded
    with its first step."""

    def __init__(
        self,
        run_id: int,
        follower: _Follower,
        leader: list[tuple[int, dict[str, Any]]],
        inputs: dict[str, dict[str, Any]],
        recorded: list[dict[str, Any]],
    ) -> None:
        self.run_id, self.recorded = run_id, recorded
        self.name, self.position, self.items, parallel = follower
        names = {str(step["name"]): item for item in self.items for step in [item[1]]}
        self.matching = {
            index: names[str(step["name"])]
            for index, (_, step) in enumerate(leader)
            if str(step["name"]) in names
        }
        self.act = _stepper(run_id, self.name, inputs)
        self.pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="shipline-follow")
        self.begun: dict[int, Future[dict[str, Any]]] = {}
        self.lock = threading.Lock()

    def begin(self, index: int, result: dict[str, Any]) -> None:
        """The leader's step `index` ended with `result`, or handed on: its follower step
        begins (once) if it succeeded."""
        item = self.matching.get(index)
        if item is not None and result["phase"] == Phase.SUCCEEDED.value:
            self._submit(item)

    def _submit(self, item: tuple[int, dict[str, Any]]) -> None:
        with self.lock:
            if item[0] in self.begun:
                return
            if not self.begun:
                _record_stage(self.run_id, self.name, self.position, Phase.RUNNING,
                              "stage started", None, self.recorded)  # fmt: skip
            self.begun[item[0]] = self.pool.submit(self.act, item, _NO_CUES)

    def finish(self, leader: str, leader_phase: Phase) -> dict[str, Any] | None:
        """Once the leader ended: when it succeeded, the steps not begun yet, then the stage's
        end as a parallel stage's; when it did not, the steps begun end and the stage counts as
        skipped (its condition, the leader's success, was not met), its outputs none. None:
        nothing began and the leader did not succeed (the stage is passed over as usual)."""
        try:
            if leader_phase == Phase.SUCCEEDED:
                for item in self.items:
                    self._submit(item)
            with self.lock:
                begun = sorted(self.begun.items())
            results = [(item, future.result()) for item, future in begun]
        finally:
            self.pool.shutdown(wait=True)
        if leader_phase != Phase.SUCCEEDED:
            if not results:
                return None
            phase, outputs = Phase.SKIPPED, dict[str, Any]()
            reason = (f"{leader} did not succeed; {len(results)} step(s) of this stage ran as "
                      "theirs succeeded")  # fmt: skip
        else:
            specs = {item[0]: StepSpec.model_validate(item[1]) for item in self.items}
            done = [(specs[position], result) for position, result in results]
            phase, reason, outputs = _verdict(done, every=True)
        _record_stage(self.run_id, self.name, self.position, phase.value, reason, outputs,
                      self.recorded)  # fmt: skip
        return {"phase": phase.value, "reason": reason, "outputs": outputs}


def _in_turn(
    steps: list[tuple[int, dict[str, Any]]], one: _Step, actions: dict[str, Any]
) -> list[dict[str, Any]]:
    """Run `steps` one after another until one does not succeed (`_Turns`)."""
    return _Turns(steps, one, actions).run()


class _Turns:
    """Steps one after another until one does not succeed. A step begins once the one before it
    ended, or handed on (`StepContext.hand_on`: its effect made and succeeded, what is left is
    writing it down), or, for a step whose action begins early (`BEGIN_EARLY`), acts
    (`StepContext.acting`: it waits on its effect; the step begun is `behind` it and makes its
    own effect after that one's); and once the one before that ended: two steps at most are
    under way. Each step's thread is there before its turn, waiting for it. What does not hold
    up the next step's effect waits for it: a step that handed on writes itself down once the
    next one acts, handed on itself (with nothing to wait on), or ended. So each step waits for
    the next one only. The results of every step that began, in order: after one that failed
    having handed on or acted, the step that began after it."""

    def __init__(
        self, steps: list[tuple[int, dict[str, Any]]], one: _Step, actions: dict[str, Any]
    ) -> None:
        self.steps, self.one = steps, one
        names = [str(step.get("action", "noop")) for _, step in steps]
        early = {name: begins_early(name, actions) for name in set(names)}  # one lookup each
        self.early = [early[name] for name in names]
        self.results: dict[int, dict[str, Any]] = {}
        self.broke: list[int] = []
        self.futures: list[Future[None]] = []
        self.changes: dict[int, str] = {}  # the change each step that acted is making
        self.handed: set[int] = set()  # the steps that handed on (their effect made)
        self.turns = [threading.Event() for _ in steps]  # handed on, or ended
        self.opened = [threading.Event() for _ in steps]  # acted too: an early step may begin
        self.released = [threading.Event() for _ in steps]  # may write itself down
        self.gated = [threading.Event() for _ in steps]  # its turn came, or will not
        self.stopped = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=5, thread_name_prefix="shipline-turn")

    def run(self) -> list[dict[str, Any]]:
        try:
            for index in range(len(self.steps)):
                self.futures.append(self.pool.submit(self._step, index))
                self.gated[index].wait()  # the next one's thread comes once this one's turn came
                if self.stopped.is_set():
                    break
            for future in self.futures:
                future.result()  # what broke in a step breaks the stage, as in this thread
        finally:
            self.stopped.set()
            for event in [*self.released, *self.turns, *self.opened]:  # nobody waits in vain
                event.set()
            self.pool.shutdown(wait=True)
        return [self.results[index] for index in sorted(self.results)]

    def _failed(self, index: int) -> bool:
        found = self.results.get(index)
        return index in self.broke or (
            found is not None and found["phase"] != Phase.SUCCEEDED.value
        )

    def _step(self, index: int) -> None:
        try:
            behind = None
            if index >= 1:
                before = index - 1
                (self.opened if self.early[index] else self.turns)[before].wait()
                if index >= 2:
                    wait_for([self.futures[index - 2]])
                if (
                    self.stopped.is_set()
                    or self._failed(before)
                    or (index >= 2 and self._failed(index - 2))
                ):
                    self.stopped.set()
                    return
                if not self.turns[before].is_set():  # it acts: this step's effect follows it
                    behind = Behind(self.changes[before], self._made(before))
            if index + 1 == len(self.steps):
                self.released[index].set()  # nothing follows it
            self.gated[index].set()
            self.results[index] = self.one(
                self.steps[index], _Cues(self._hand_on(index), self._acting(index), behind)
            )
        except BaseException:
            self.broke.append(index)
            self.stopped.set()
            raise
        finally:
            self.gated[index].set()
            self.turns[index].set()
            self.opened[index].set()
            if index >= 1:
                self.released[index - 1].set()

    def _made(self, index: int) -> Callable[[], bool]:
        def wait() -> bool:  # made: it handed on, or ended succeeded (not: failed, broke, stopped)
            self.turns[index].wait()
            found = self.results.get(index)
            return index in self.handed or (
                found is not None and found["phase"] == Phase.SUCCEEDED.value
            )

        return wait

    def _acting(self, index: int) -> Callable[[str], None]:
        def now(change: str) -> None:
            if index >= 1:
                self.released[index - 1].set()
            self.changes[index] = change
            self.opened[index].set()

        return now

    def _hand_on(self, index: int) -> Callable[[], None]:
        def now() -> None:
            if index >= 1:  # past its effect, as when it acts: the one before writes itself down
                self.released[index - 1].set()
            self.handed.add(index)
            self.turns[index].set()
            self.opened[index].set()
            self.released[index].wait()

        return now


# a try for locks in a stage's step: keys, policy, the stage to begin, the stage that goes on
_Locks = tuple[list[str], str, tuple[str, int] | None, tuple[str, int, str] | None]


@DBOS.step(name="shipline.stage-steps")
def _execute_stage(
    run_id: int,
    stage: str,
    position: int,
    steps: list[tuple[int, dict[str, Any]]],
    inputs: dict[str, dict[str, Any]],
    parallel: int,
    begin: bool,
    ends: dict[str, dict[str, Any]] | None = None,
    reasons: list[str] | None = None,
    locks: _Locks | None = None,
    follower: _Follower | None = None,
    owed: _Owed | None = None,
) -> dict[str, Any]:
    """A stage of once-tried actions (`_batchable`) as one durable step: it records the stage's
    start (`begin`: the stage has no gates before its steps), runs the steps as
    `_execute_steps` does and records the stage's end; the stage's phase, reason and outputs.
    `ends` (from `ends_after`): when the stage ended in one of its phases nothing else runs,
    and the run ends here too (`ended`: its phase; `reasons`: the run's reasons so far).
    `locks` (keys, policy, begin, resumed): the stage's try for its locks comes first, as
    `_take_locks`; unless they are held, nothing else is done (`lock`: 'queued' or
    'cancelled'). `follower`: the stage streamed after this one (`_Streamed`), run and
    recorded here too (`follower` in the result: its phase, reason and outputs). `owed`: what
    the stages before it left (`_settle`), done first."""
    recorded = current().store.stages(run_id)
    if owed is not None:
        _settle(run_id, owed, recorded)
    if locks is not None:
        state = _take_locks(run_id, *locks, recorded=recorded)
        if state != "held":
            return {"lock": state}
    if begin:
        _record_stage(run_id, stage, position, Phase.RUNNING, "stage started", None, recorded)
    streamed = _Streamed(run_id, follower, steps, inputs, recorded) if follower else None
    try:
        results = _run_steps(run_id, stage, steps, inputs, parallel,
                             then=streamed.begin if streamed else None)  # fmt: skip
    except BaseException:
        if streamed is not None:
            streamed.pool.shutdown(wait=True)
        raise
    specs = [StepSpec.model_validate(step) for _, step in steps]
    phase, reason, outputs = _verdict(list(zip(specs, results, strict=False)), every=parallel > 1)
    _record_stage(run_id, stage, position, phase.value, reason, outputs, recorded)
    done: dict[str, Any] = {"phase": phase.value, "reason": reason, "outputs": outputs}
    if streamed is not None:
        done["follower"] = streamed.finish(stage, phase)
    end = (ends or {}).get(phase.value)
    if end is not None:
        why = [*(reasons or []), *([f"{stage}: {reason}"] if phase != Phase.SUCCEEDED else [])]
        passed = [(str(n), int(at), str(ended), str(w)) for n, at, ended, w in end["passed"]]
        _end_run(run_id, end["phase"], "; ".join(why) or "all stages succeeded", passed)
        done["ended"] = end["phase"]
    return done


def _verdict(
    results: list[tuple[StepSpec, dict[str, Any]]], *, every: bool
) -> tuple[Phase, str, dict[str, Any]]:
    """A stage's phase, reason and outputs from its steps' results: the first step that did not
    succeed (one after another), or the worst (`every`: the steps ran side by side)."""
    outputs: dict[str, Any] = {}
    worst, reason = Phase.SUCCEEDED, "stage succeeded"
    for step, result in results:
        # every step's outputs: one that began after the first failure (handed on to) acted too
        outputs.update(passed_on(result["outputs"]))
        phase = Phase(result["phase"])
        if (every or worst == Phase.SUCCEEDED) and _SEVERITY.index(phase) > _SEVERITY.index(worst):
            worst, reason = phase, _outcome(step, result)
    return worst, reason, outputs


def _attempt(
    run_id: int,
    stage: str,
    position: int,
    spec: StepSpec,
    inputs: dict[str, dict[str, Any]],
    attempt: int,
    *,
    again: bool = False,
    cues: _Cues = _NO_CUES,
) -> dict[str, Any]:
    """Act out one attempt of a step and record its outcome. `again`: the attempt had started
    before and has no outcome (its worker stopped while it ran): it starts over, and says so.
    `cues`: what its `StepContext`'s hand-on and acting say to, and the step it is behind."""
    rt = current()
    store = rt.store
    outputs: dict[str, Any] = {}
    values: dict[str, Any] = {"position": position, "phase": "running", "attempts": attempt}
    if attempt == 1 and not again:
        values["started_at"] = rt.clock()
    said = f"attempt {attempt}" + (" again: its worker stopped while it ran" if again else "")
    cancel = store.record(
        run_id, "step.running", said, stage=stage, step=spec.name, step_values=values
    )
    terminal = True
    if cancel:
        phase, error = Phase.CANCELLED, "not started: the run was cancelled"
    else:
        deadline = time.monotonic() + spec.timeout_seconds if spec.timeout_seconds else None
        ctx = StepContext(
            run_id=run_id,
            stage=stage,
            step=spec.name,
            attempt=attempt,
            inputs=inputs,
            log=_step_logger(run_id, stage, spec.name),
            cancelled=_cancel_probe(run_id),
            deadline=deadline,
            handed_on=cues.hand_on,
            began_acting=cues.acting,
            behind=cues.behind,
        )
        try:
            action = find_action(spec.action, rt.actions)
            outputs = _call(action, ctx, dict(spec.params), spec.timeout_seconds)
            phase, error = Phase.SUCCEEDED, None
        except StepCancelled as exc:
            phase, error = Phase.CANCELLED, exc.message
        except Withdrawn as exc:  # queued behind a step that did not succeed: nothing done
            phase, error = Phase.SKIPPED, exc.message
        except RuleError as exc:
            phase, error = Phase.FAILED, _told(exc)
        except ShiplineError as exc:
            phase, error, terminal = Phase.ERRORED, _told(exc), exc.terminal
        except Exception as exc:
            phase, error, terminal = Phase.ERRORED, f"{type(exc).__name__}: {exc}", False
    error = rt.masker.mask(error) if error else None
    final = phase != Phase.ERRORED or terminal or attempt >= spec.retry.attempts
    rt.log_writer().flush()  # the step's lines are in the store before its outcome
    if not final:
        store.record(
            run_id, "step.retrying", f"attempt {attempt} errored: {error}", stage=stage,
            step=spec.name,
        )  # fmt: skip
        return {"phase": phase.value, "outputs": {}, "error": error, "final": False}
    store.record(
        run_id,
        f"step.{phase.value}",
        error or "done",
        stage=stage,
        step=spec.name,
        step_values={
            "position": position,
            "phase": phase.value,
            "error": error,
            "finished_at": rt.clock(),
            "outputs": outputs,
        },
    )
    failpoint("step-recorded", f"run-{run_id}/{stage}/{spec.name}")
    return {"phase": phase.value, "outputs": outputs, "error": error, "final": True}


def _told(exc: ShiplineError) -> str:
    """A step's error as the run keeps it: the message, and what to do about it."""
    return f"{exc.message} (hint: {exc.hint})" if exc.hint else exc.message


def _recorded_outcome(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A step's final outcome as the state store recorded it (`row`), or None while it has none.

    The recorded outcome is the commit point of a step: the engine's own checkpoint follows it
    in another transaction, and a worker killed between the two runs the step again; this makes
    that run return what was recorded instead of acting (and logging) a second time."""
    if row is None or row["finished_at"] is None or not Phase(row["phase"]).done:
        return None
    return {
        "phase": row["phase"],
        "outputs": row["outputs"] or {},
        "error": row["error"],
        "final": True,
    }


def _attempts(
    run_id: int, stage: str, position: int, step: StepSpec, inputs: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Run a step's attempts; the backoff between them is a durable sleep of the workflow."""
    data = step.model_dump(mode="json")
    attempt = 1
    while True:
        result = _execute(run_id, stage, position, data, inputs, attempt)
        if result["final"]:
            return result
        DBOS.sleep(backoff_delay(attempt, step.retry.backoff_seconds))
        attempt += 1


def _step_logger(run_id: int, stage: str, step: str) -> Callable[[str], None]:
    rt = current()
    return step_logger(rt.log_writer(), rt.masker.mask, run_id, stage, step)


def _cancel_probe(run_id: int) -> Callable[[], bool]:
    store = current().store

    def probe() -> bool:
        record = store.get_run(run_id, spec=False)
        return bool(record and record.cancel_requested)

    return probe


def _call(
    action: Any, ctx: StepContext, params: dict[str, Any], timeout: float | None
) -> dict[str, Any]:
    if timeout is None:
        result: dict[str, Any] = action(ctx, params) or {}
        return result
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shipline-step")
    future = pool.submit(action, ctx, params)
    try:
        return future.result(timeout=timeout) or {}
    except FutureTimeout:
        raise StepTimedOut(f"step '{ctx.step}' timed out after {timeout:g} s") from None
    finally:
        pool.shutdown(wait=False)  # a step that ignores its deadline is left behind, not waited for


@DBOS.step(name="shipline.finish")
def _finish(
    run_id: int,
    phase: str,
    reason: str,
    passed: list[tuple[str, int, str, str]] | None = None,
    reports: str | None = None,
) -> None:
    _end_run(run_id, phase, reason, passed, reports)


def _end_run(
    run_id: int,
    phase: str,
    reason: str,
    passed: list[tuple[str, int, str, str]] | None = None,
    reports: str | None = None,
) -> None:
    """End the run: `passed`, its last stages passed over (skipped, cancelled), then its
    report, its audit record and its end; its locks released, the runs waiting for them woken.
    `reports`: where its report goes (`_reports_folder`), when the caller has its pipeline;
    else read from the run's specification."""
    rt = current()
    waiting = rt.store.leave_locks(run_id)
    record = rt.store.get_run(run_id, spec=reports is None)
    if reports is None:
        reports = _reports_folder(record.spec if record else {})
    report: str | None = None
    if record is None or record.phase != phase or record.finished_at is None:  # not yet recorded
        if passed:  # its locks are left above, with the runs waiting for them
            _settle(run_id, (passed, False), rt.store.stages(run_id))
        # The report first: whoever sees the run's end finds its report.
        report = _report(run_id, reports, phase, reason)
        # What reached where, in the audit trail: written before the run's end is visible, so
        # that whoever sees the end finds the record (a crash in between may write it twice;
        # it never loses it).
        rt.audit.append(
            "shipline", "run.finish", run=run_id, phase=phase, reason=reason,
            pipeline=record.pipeline if record else None,
            environment=record.environment if record else None,
            environments=(record.params.get("environments") if record else None),
            services=record.services if record else {},
            release=(record.params.get("release") if record else None),
        )  # fmt: skip
        rt.store.record(
            run_id,
            f"run.{phase}",
            reason,
            run_values={"phase": phase, "reason": reason, "finished_at": rt.clock()},
        )
        _moved(run_id, ended=True)
    for other in waiting:
        if other != run_id:
            _wake(other, {"type": "lock"})
    # the true phase: errored is not failed
    _announce(run_id, EventKind(phase), reason=reason, report=report)


def _reports_folder(spec: dict[str, Any]) -> str:
    """The state folder a run's pipeline deploys from, where its report goes ("": none, it
    is not a deploy or a promotion)."""
    for stage in spec.get("stages", []):
        for step in stage.get("steps", []):
            if "stateDir" in (step.get("params") or {}):
                return str(step["params"]["stateDir"])
    return ""


def _report(run_id: int, folder: str, phase: str, reason: str) -> str | None:
    """Write the run's report beside its state, in `folder` (deploys and promotions); its
    path."""
    from shipline.engine.reports import write_reports

    if not folder:
        return None
    try:
        written = write_reports(current().store, run_id, Path(folder), phase=phase, reason=reason)
    except Exception as exc:  # a report never changes how the run ended
        current().store.record(run_id, "report.failed", f"{type(exc).__name__}: {exc}")
        return None
    if written is None:
        return None
    current().store.record(run_id, "report", str(written))
    return str(written)


# --- the workflow -------------------------------------------------------------------------------


def _receive(until: datetime | None) -> dict[str, Any] | None:
    """The next inbox message, or None once `until` has passed. Cancellation raises."""
    rt = current()
    while True:
        now = _parse(_now())
        if until is not None and now >= until:
            return None
        chunk = (
            rt.wait_chunk_seconds
            if until is None
            else min((until - now).total_seconds(), rt.wait_chunk_seconds)
        )
        message = DBOS.recv(INBOX, timeout_seconds=max(chunk, 0.01))
        if message is None:
            if until is None:
                return None
            continue
        if message.get("type") == "cancel":
            raise _Cancelled()
        return dict(message)


def _gate_window(
    run_id: int, stage: StageSpec, position: int, emergency: bool, waited: bool
) -> tuple[Phase | None, ApprovalPolicy | None]:
    """Wait for the business-hours window, parked (no worker) until it opens; returns (a final
    phase or None, extra approvals). `waited`: this stage was parked here before."""
    assert stage.window is not None
    while True:
        result = _window(
            run_id, stage.name, stage.window.model_dump(mode="json", by_alias=True), emergency
        )
        verdict = Verdict(result["verdict"])
        if verdict == Verdict.PASS:
            if waited:
                _resumed(run_id, stage.name, position, "window open")
            return None, None
        if verdict == Verdict.FAIL:
            return Phase.FAILED, None
        if verdict == Verdict.OVERRIDE:
            return None, stage.window.emergency
        if not waited:
            _waiting(run_id, stage.name, position, result["reason"], None)
            waited = True
        _wait_parked(run_id, stage.name, _parse(result["opens"]) if result["opens"] else None)


def _combine(decisions: list[Decision]) -> Outcome:
    outcomes = {d.outcome for d in decisions}
    for outcome in (Outcome.REJECTED, Outcome.TIMED_OUT, Outcome.PENDING):
        if outcome in outcomes:
            return outcome
    return Outcome.APPROVED


def _gate_approvals(
    run_id: int,
    stage: StageSpec,
    position: int,
    policies: list[ApprovalPolicy],
    members: dict[str, list[str]],
    requester: str,
    prior: dict[str, Any] | None,
) -> tuple[Phase, str]:
    """Wait for the stage's approvals, parked (no worker) between votes; `prior` is what the
    stage recorded before it was parked (its policies and since when it waits) and the look at
    its votes taken with the run. Approved: (RUNNING, why); the stage's going on is recorded
    here, or with the first try for its locks when it has some."""
    recorded = (prior or {}).get("outputs") or {}
    if "approvalOpened" in recorded:  # parked here before: the same policies, the same clock
        opened = _parse(recorded["approvalOpened"])
        reason = str((prior or {}).get("reason") or "")
    else:
        groups = ", ".join(g for p in policies for g in p.groups)
        approve = f"shipline approve {run_id} --stage {stage.name} --as USER"
        notes = "; ".join(p.instructions for p in policies if p.instructions)
        reason = f"waiting for approval by {groups}" + (f" ({notes})" if notes else "")
        _waiting(
            run_id, stage.name, position, reason, approve,
            [p.model_dump(mode="json") for p in policies],
        )  # fmt: skip
        opened = _parse(_opened(run_id, stage.name))
    look = (prior or {}).get("look")  # taken with the run when it was woken
    while True:
        state = look if look is not None else _approval_state(run_id, stage.name)
        look = None
        votes = [
            Vote(v["user"], v["approve"], _parse(v["at"]), v["comment"]) for v in state["votes"]
        ]
        now = _parse(state["now"])
        decisions = [
            evaluate_approvals(p, members, votes, requester, opened, now) for p in policies
        ]
        outcome = _combine(decisions)
        if outcome == Outcome.APPROVED:
            why = "; ".join(d.reason for d in decisions)
            if not stage.locks:  # else recorded with the first try for the locks
                _resumed(run_id, stage.name, position, why)
            return Phase.RUNNING, why
        if outcome == Outcome.REJECTED:
            return Phase.FAILED, next(d.reason for d in decisions if d.outcome == Outcome.REJECTED)
        if outcome == Outcome.TIMED_OUT:
            return Phase.FAILED, "approval timed out: " + next(
                d.reason for d in decisions if d.outcome == Outcome.TIMED_OUT
            )
        still = "; ".join(d.reason for d in decisions if d.outcome == Outcome.PENDING)
        if votes and still != reason:
            reason = still
            _still_waiting(run_id, stage.name, position, reason)
        deadline = min(d.deadline for d in decisions if d.deadline is not None)
        _wait_parked(run_id, stage.name, deadline)


@DBOS.step(name="shipline.opened")
def _opened(run_id: int, stage: str) -> str:
    """When the stage began to wait for its approvals (as recorded)."""
    for row in current().store.stages(run_id):
        if row["name"] == stage:
            found = (row.get("outputs") or {}).get("approvalOpened")
            if found:
                return str(found)
    return _iso(current().clock())


_Try = Callable[[tuple[str, int] | None, tuple[str, int, str] | None], str]


def _gate_locks(
    run_id: int,
    stage: StageSpec,
    begin: int | None = None,
    resumed: tuple[int, str] | None = None,
    take: _Try | None = None,
) -> Phase | None:
    """Queue for the stage's locks; parked (no worker) until the holder releases them (or, as
    a fallback should a wake-up be missed, `lock_poll_seconds`). `begin`: the stage's position
    when its start is still to be recorded (with the first try); `resumed`: its position and
    why it goes on, when its approvals just passed (also recorded with the first try); `take`:
    how each try is made, given those two (default: a `_lock_try` step)."""
    rt = current()
    starting = (stage.name, begin) if begin is not None else None
    going_on = (stage.name, *resumed) if resumed is not None else None
    keys, policy = sorted(stage.locks), stage.lock_policy.value
    while True:
        if take is not None:
            state = take(starting, going_on)
        else:
            state = _lock_try(run_id, keys, policy, starting, going_on)
        starting = going_on = None
        if state == "held":
            return None
        if state == "cancelled":
            return Phase.CANCELLED
        _wait_parked(run_id, stage.name, None, seconds=rt.lock_poll_seconds)


@dataclass
class _StageStep:
    """A stage whose steps are one durable step (`_execute_stage`); with locks, each try for
    them is made in that step (`__call__`, as `_gate_locks` takes it), and the steps run in
    the step whose try took them. `done`: what the last step gave."""

    run_id: int
    stage: StageSpec
    position: int
    inputs: dict[str, dict[str, Any]]
    ends: dict[str, dict[str, Any]] | None
    reasons: list[str] | None
    follower: _Follower | None = None
    done: dict[str, Any] | None = None
    owed: _Owed | None = None  # done by its first step (its first try for its locks)

    def __call__(
        self, starting: tuple[str, int] | None, going_on: tuple[str, int, str] | None
    ) -> str:
        locks = (sorted(self.stage.locks), self.stage.lock_policy.value, starting, going_on)
        return str(self.run(locks).get("lock", "held"))

    def run(self, locks: _Locks | None = None) -> dict[str, Any]:
        stage = self.stage
        owed, self.owed = self.owed, None
        self.done = _execute_stage(
            self.run_id, stage.name, self.position, _items(stage.steps), self.inputs,
            stage.parallel, False, self.ends, self.reasons, locks, self.follower, owed,
        )  # fmt: skip
        return self.done


def _run_stage(
    run_id: int,
    position: int,
    stage: StageSpec,
    outputs: dict[str, dict[str, Any]],
    params: dict[str, Any],
    members: dict[str, list[str]],
    requester: str,
    prior: dict[str, Any] | None = None,
    cancel: bool = False,
    ends: dict[str, dict[str, Any]] | None = None,
    reasons: list[str] | None = None,
    follower: _Follower | None = None,
    streamed: dict[str, dict[str, Any]] | None = None,
    owed: _Owed | None = None,
) -> tuple[Phase, dict[str, Any], str, bool, str | None]:
    """Run one stage: its gates (window, approvals, locks), then its steps. `prior`: what the
    stage recorded before the run was parked in it (a continuation re-enters here); `ends`,
    `reasons`: when nothing would run after it, the stage's step also ends the run (see
    `_execute_stage`). The result ends with whether the stage's end is recorded already, and
    the run's phase when the run ended with it. `follower`: the stage streamed after this one,
    when its steps run in one durable step; what it ended with goes in `streamed`. `owed`:
    what the stages before it left (`_Owed`), done in its first step where `_absorbs` says
    it can be, else first, each in its own step."""
    whole = _whole(stage)
    gated = stage.window is not None or stage.approval is not None or bool(stage.locks)
    follower = follower if whole else None
    owed = _owed_here(run_id, stage, prior, owed, cancel)
    if prior is None and whole and not gated:  # one durable step: start, steps and end
        done = _execute_stage(
            run_id, stage.name, position, _items(stage.steps), outputs, stage.parallel, True,
            ends, reasons, None, follower, owed,
        )  # fmt: skip
        _streamed_out(done, follower, streamed)
        return Phase(done["phase"]), done["outputs"], done["reason"], True, done.get("ended")
    # A stage whose first gate is its locks records its start with the first try for them.
    fold = prior is None and stage.window is None and stage.approval is None and bool(stage.locks)
    if prior is None and not fold:
        _stage_event(run_id, stage.name, position, Phase.RUNNING, "stage started")
    elif cancel:
        raise _Cancelled()
    recorded = (prior or {}).get("outputs") or {}
    waited = prior is not None and prior.get("phase") == "waiting"
    policies: list[ApprovalPolicy]
    if prior is not None and prior.get("phase") == "running":
        policies = []  # parked at its locks: its window and approvals were passed already
    elif "approvalPolicies" in recorded:  # past its window already: the policies it recorded
        policies = [ApprovalPolicy.model_validate(p) for p in recorded["approvalPolicies"]]
    else:
        extra: ApprovalPolicy | None = None
        if stage.window is not None:
            emergency = bool(params.get("emergency"))
            final, extra = _gate_window(run_id, stage, position, emergency, waited)
            if final is not None:
                return final, {}, "outside the deployment window", False, None
        policies = policies_in_force(stage.approval, extra, overridden=extra is not None)
    approved: tuple[int, str] | None = None
    if policies:
        phase, reason = _gate_approvals(
            run_id, stage, position, policies, members, requester, prior
        )
        if phase != Phase.RUNNING:
            return phase, {}, reason, False, None
        approved = (position, reason)
    execute = _StageStep(run_id, stage, position, outputs, ends, reasons, follower, owed=owed)
    if stage.locks:
        final = _gate_locks(
            run_id, stage, position if fold else None, approved, execute if whole else None
        )
        if final is not None:
            return final, {}, "cancelled while waiting for the lock", False, None
    stage_outputs: dict[str, Any] = {}
    recorded = False
    if whole:  # its steps and its end in one durable step (with its locks: done already)
        done = execute.done or execute.run()
        _streamed_out(done, follower, streamed)
        phase, stage_outputs, reason = Phase(done["phase"]), done["outputs"], done["reason"]
        recorded = True
        if done.get("ended"):
            return phase, stage_outputs, reason, recorded, done["ended"]
    else:
        phase, reason = _run_apart(run_id, stage, outputs, stage_outputs)
    if stage.locks and not stage.hold_locks_until:
        _unlock(run_id)
    return phase, stage_outputs, reason, recorded, None


def _run_apart(
    run_id: int, stage: StageSpec, outputs: dict[str, dict[str, Any]], stage_outputs: dict[str, Any]
) -> tuple[Phase, str]:
    """A stage whose steps are not one durable step: its canaries side by side, its steps
    side by side, or one after another."""
    if stage.parallel > 1 and any(step.kind == "canary" for step in stage.steps):
        return _run_canaries(run_id, stage, stage_outputs)
    if stage.parallel > 1:
        return _run_parallel(run_id, stage, outputs, stage_outputs)
    return _run_sequential(run_id, stage, outputs, stage_outputs)


def _streamed_out(
    done: dict[str, Any], follower: _Follower | None, streamed: dict[str, dict[str, Any]] | None
) -> None:
    """What the stage streamed after this one ended with, for the run's loop (`streamed`)."""
    if follower is not None and streamed is not None and done.get("follower") is not None:
        streamed[follower[0]] = done["follower"]


def _items(steps: list[StepSpec]) -> list[tuple[int, dict[str, Any]]]:
    """Steps with their positions, as a durable step takes them."""
    return [(index, step.model_dump(mode="json")) for index, step in enumerate(steps)]


def _outcome(step: StepSpec, result: dict[str, Any]) -> str:
    detail = f": {result['error']}" if result.get("error") else ""
    return f"step '{step.name}' {result['phase']}{detail}"


def _run_sequential(
    run_id: int, stage: StageSpec, outputs: dict[str, dict[str, Any]], stage_outputs: dict[str, Any]
) -> tuple[Phase, str]:
    batch: list[tuple[int, StepSpec]] = []
    for index, step in enumerate(stage.steps):
        if _batchable(step):
            batch.append((index, step))
            following = stage.steps[index + 1] if index + 1 < len(stage.steps) else None
            if following is not None and _batchable(following):
                continue  # a run of once-tried actions is one durable step
            items = [(i, s.model_dump(mode="json")) for i, s in batch]
            results = _execute_steps(run_id, stage.name, items, outputs)
            done = [s for _, s in batch][: len(results)]
            phase, reason, found = _verdict(list(zip(done, results, strict=True)), every=False)
            stage_outputs.update(found)
            if phase != Phase.SUCCEEDED:
                return phase, reason
            batch = []
            continue
        if step.kind == "timer":
            seconds = float(step.params.get("seconds", 0))
            until = _parse(_now()) + timedelta(seconds=seconds)
            while _receive(until) is not None:
                pass  # only cancellation or the clock end a timer
            continue
        if step.kind == "canary":
            result = drive_canary(run_id, stage.name, index, step, _receive, lambda: _parse(_now()))
        else:
            result = _attempts(run_id, stage.name, index, step, outputs)
        stage_outputs.update(passed_on(result["outputs"]))
        if result["phase"] != Phase.SUCCEEDED:
            return Phase(result["phase"]), _outcome(step, result)
    return Phase.SUCCEEDED, "stage succeeded"


@DBOS.workflow(name="shipline.step")
def _step_workflow(
    run_id: int, stage: str, index: int, step: dict[str, Any], outputs: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """One step of a parallel stage, durable on its own (a child of the run's workflow)."""
    return _attempts(run_id, stage, index, StepSpec.model_validate(step), outputs)


# a step withdrawn (skipped) only follows one that did not succeed: any other outcome tells more
_SEVERITY = [Phase.SUCCEEDED, Phase.SKIPPED, Phase.CANCELLED, Phase.FAILED, Phase.ERRORED]


def _run_parallel(
    run_id: int, stage: StageSpec, outputs: dict[str, dict[str, Any]], stage_outputs: dict[str, Any]
) -> tuple[Phase, str]:
    """Run the stage's steps `stage.parallel` at a time; every step runs even if one fails.
    Once-tried actions run in one durable step (threads); steps with retries each in a durable
    child workflow of their own."""
    steps = [s for s in stage.steps if s.kind == "action"]
    results: list[tuple[StepSpec, dict[str, Any]]] = []
    if all(_batchable(s) for s in steps):
        done = _execute_steps(run_id, stage.name, _items(steps), outputs, stage.parallel)
        results = list(zip(steps, done, strict=True))
    window: list[tuple[StepSpec, Any]] = []
    for index, step in enumerate(steps if not results else []):
        if len(window) >= stage.parallel:
            done_step, handle = window.pop(0)
            results.append((done_step, handle.get_result()))
        handle = DBOS.start_workflow(
            _step_workflow, run_id, stage.name, index, step.model_dump(mode="json"), outputs
        )
        window.append((step, handle))
    for step, handle in window:
        results.append((step, handle.get_result()))
    worst, reason, found = _verdict(results, every=True)
    stage_outputs.update(found)
    return worst, reason


CANARY_ENDED = "canary.ended"  # a child's word to the run's workflow (`_run_canaries`)


@DBOS.workflow(name="shipline.canary")
def _canary_workflow(
    run_id: int, stage: str, index: int, step: dict[str, Any], parent: str
) -> dict[str, Any]:
    """One service's canary of a stage that runs several at once, durable on its own (a child
    of the run's workflow, which hands it the messages meant for it); it tells the run's
    workflow when it ended."""
    try:
        return drive_canary(
            run_id, stage, index, StepSpec.model_validate(step), _receive, lambda: _parse(_now())
        )
    except _Cancelled:  # recorded as cancelled, stable restored (`drive_canary`)
        return {"phase": Phase.CANCELLED.value, "outputs": {},
                "error": "run cancelled during the canary"}  # fmt: skip
    finally:  # whatever it ended with (an error too: the run's workflow then meets it)
        DBOS.send(parent, {"type": CANARY_ENDED, "step": step["name"]}, INBOX)


def _run_canaries(
    run_id: int, stage: StageSpec, stage_outputs: dict[str, Any]
) -> tuple[Phase, str]:
    """Each service's canary in a child workflow of its own, `stage.parallel` at a time, as
    Argo Rollouts runs each service's rollout on its own: one that fails stops no other, but
    none starts after it (the stage has failed). The run's inbox is theirs too: a person's
    promote or abort goes to the canary it names (each running one when it names none); a
    cancellation to all, which restore their stable versions before the stage ends."""
    parent = str(DBOS.workflow_id)
    waiting = list(enumerate(stage.steps))
    running: dict[str, tuple[StepSpec, Any]] = {}
    results: list[tuple[StepSpec, dict[str, Any]]] = []

    def start() -> None:
        failed = any(result["phase"] != Phase.SUCCEEDED.value for _, result in results)
        while waiting and len(running) < stage.parallel and not failed:
            index, step = waiting.pop(0)
            handle = DBOS.start_workflow(
                _canary_workflow, run_id, stage.name, index, step.model_dump(mode="json"), parent
            )
            running[step.name] = (step, handle)

    start()
    try:
        while running:
            message = _receive(None)  # a quiet chunk gives None; a cancellation raises
            if message is None:
                continue
            if message.get("type") == CANARY_ENDED and message.get("step") in running:
                step, handle = running.pop(str(message["step"]))
                results.append((step, handle.get_result()))
                start()
            elif message.get("type") == "canary":
                named = message.get("step")
                for name in [named] if named else list(running):
                    if name in running:
                        DBOS.send(running[name][1].get_workflow_id(), message, INBOX)
    except _Cancelled:
        for _, handle in running.values():
            DBOS.send(handle.get_workflow_id(), {"type": "cancel"}, INBOX)
        for _, handle in running.values():
            handle.get_result()
        raise
    worst, reason, found = _verdict(results, every=True)
    stage_outputs.update(found)
    return worst, reason


def _held_released(spec: PipelineSpec, results: dict[str, Phase], ended: str) -> bool:
    """Whether the locks a stage kept are to be released now that the last stage they cover
    (`ended`) has ended; after the run's last stage `_finish` releases every lock the run holds
    (one step, not two)."""
    if len(results) == len(spec.stages):
        return False
    for stage in spec.stages:
        covered = stage.hold_locks_until
        done = stage.name in results and all(name in results for name in covered)
        if stage.locks and ended in covered and done:
            return True
    return False


def _owed_here(
    run_id: int,
    stage: StageSpec,
    prior: dict[str, Any] | None,
    owed: _Owed | None,
    cancel: bool = False,
) -> _Owed | None:
    """`owed` when the stage's first step can do it (`_absorbs`; not when the run is to
    cancel: that stage does not begin); else it is done now, a step each, and nothing is
    left."""
    if owed is None or (_absorbs(stage, prior) and not cancel):
        return owed
    passed, unlock = owed
    if unlock:
        _unlock(run_id)
    _record_passed(run_id, passed)
    return None


def _absorbs(stage: StageSpec, prior: dict[str, Any] | None) -> bool:
    """Whether the stage's first durable step comes before anything it could wait for (a
    window, approvals), so that it can do what the stages before it left (`_Owed`): a stage
    of once-tried actions, begun now, whose only gate is its locks, if any."""
    return prior is None and _whole(stage) and stage.window is None and stage.approval is None


def _whole(stage: StageSpec) -> bool:
    """Whether the stage is only once-tried actions (`_batchable`): its steps are one durable
    step (`_execute_stage`)."""
    return bool(stage.steps) and all(_batchable(s) for s in stage.steps)


def _start_or_resume(
    run_id: int, loaded: dict[str, Any], spec: PipelineSpec
) -> tuple[dict[str, dict[str, Any]], bool] | str:
    """A run just begun (`_load` began it) or a parked one taken over (a continuation): what
    its stages recorded and whether it was asked to cancel; a string ends the workflow."""
    if "resumed" in loaded:  # a continuation of a parked run
        resumed = loaded["resumed"]
        if resumed is None:
            return "duplicate"  # another continuation has the run
        return resumed["stages"], bool(resumed["cancel"])
    if loaded["cancel"]:  # begun in `_load`
        _finish(run_id, Phase.CANCELLED.value, "cancelled before it started")
        return Phase.CANCELLED.value
    return {}, False


def _follower_of(
    stage: StageSpec | None, order: list[str], prior: dict[str, Any]
) -> _Follower | None:
    """The stage streamed after the one about to run (`followers`), unless it began on its own
    in an earlier segment of the run."""
    if stage is None or stage.name in prior:
        return None
    return (stage.name, order.index(stage.name), _items(stage.steps), stage.parallel)


def _finished(before: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a stage recorded in an earlier segment of the run, when it ended there."""
    if before is not None and before["finished"] and Phase(before["phase"]).done:
        return before
    return None


def _record_passed(
    run_id: int, passed: list[tuple[str, int, str, str]]
) -> list[tuple[str, int, str, str]]:
    """Record the stages passed over before the stage that runs now; none are left."""
    for skipped in passed:
        _stage_event(run_id, *skipped)
    return []


def _earlier_reason(name: str, before: dict[str, Any]) -> list[str]:
    """Why a stage that ended in an earlier segment counts against the run (if it does)."""
    ran = before["reason"] not in ("run cancelled", "condition not met")
    if Phase(before["phase"]) not in (Phase.SUCCEEDED, Phase.SKIPPED) and ran:
        return [f"{name}: {before['reason']}"]
    return []


@DBOS.workflow(name=WORKFLOW_NAME)
def run_workflow(run_id: int) -> str:
    """Execute run `run_id` from the state store to its end, or until it waits: then the run
    is parked (this workflow ends) and a continuation (the same function under the next
    segment's id) picks it up where it waited, once a vote, a lock or the clock wakes it."""
    loaded = _load(run_id)
    spec = PipelineSpec.model_validate(loaded["spec"])
    params: dict[str, Any] = loaded["params"]
    members, requester = params.get("approvers", {}), str(params.get("requestedBy", ""))
    begun = _start_or_resume(run_id, loaded, spec)
    if isinstance(begun, str):
        return begun
    prior, cancel_now = begun
    deps, by_name = dependencies(spec), {s.name: s for s in spec.stages}
    results: dict[str, Phase] = {}
    outputs: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []
    # passed: the stages passed over, not yet recorded; unlock: the locks the stages before
    # kept, not yet released
    cancelled, passed, unlock = False, list[tuple[str, int, str, str]](), False
    order, leaders = stage_order(spec), followers(spec)
    streamed: dict[str, dict[str, Any]] = {}  # the stages that ran streamed after their leader
    for position, name in enumerate(order):
        stage = by_name[name]
        before = prior.get(name)
        # ended in an earlier segment, or ran beside the stage it follows (and ended there)
        ended_before = streamed.get(name) or _finished(before)
        if ended_before is not None:
            results[name], outputs[name] = Phase(ended_before["phase"]), ended_before["outputs"]
            reasons += _earlier_reason(name, ended_before)
            if name in streamed:
                unlock = _held_released(spec, results, name) or unlock
            cancelled = cancelled or results[name] == Phase.CANCELLED
            continue
        if cancelled or not should_run(stage.condition, deps[name], results):
            results[name] = Phase.CANCELLED if cancelled else Phase.SKIPPED
            why = "run cancelled" if cancelled else "condition not met"
            # recorded with the next stage's start, or with the run's end (one step less)
            passed.append((name, position, results[name].value, why))
            unlock = _held_released(spec, results, name) or unlock
            continue
        # what the stages before it left, done in its first step (or first, by `_run_stage`)
        owed, passed, unlock = ((passed, unlock) if passed or unlock else None), [], False
        follower = _follower_of(leaders.get(name), order, prior)
        try:
            phase, stage_outputs, reason, recorded, ended = _run_stage(
                run_id, position, stage, outputs, params, members, requester, before, cancel_now,
                None if follower else ends_after(order, position, by_name, deps, results, prior),
                reasons, follower, streamed, owed,
            )  # fmt: skip
        except _Cancelled:
            phase, stage_outputs, reason, recorded, ended = (
                Phase.CANCELLED, {}, "cancelled", False, None
            )  # fmt: skip
            _unlock(run_id)
        except _Parked as parked:
            return f"parked ({parked})"
        if ended is not None:
            return ended  # its stage's step ended the run: nothing after it would have run
        results[name], outputs[name] = phase, stage_outputs
        if not recorded:
            _stage_event(run_id, name, position, phase, reason, stage_outputs)
        unlock = _held_released(spec, results, name)
        if phase != Phase.SUCCEEDED:
            reasons.append(f"{name}: {reason}")
        cancelled = cancelled or phase == Phase.CANCELLED
    final = run_phase(results, cancelled)
    _finish(
        run_id, final.value, "; ".join(reasons) or "all stages succeeded", passed,
        _reports_folder(loaded["spec"]),
    )  # fmt: skip
    return final.value
