"""The run service: start runs, vote on them, cancel them, read them. The CLI calls this."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from shipline.domain.approvals import (
    Vote,
    VoteEffect,
    check_voter,
    policies_in_force,
    vote_effect,
)
from shipline.domain.models import ApprovalPolicy
from shipline.domain.pipeline import PipelineSpec, StageSpec, stage_order
from shipline.engine.actions import NOTE
from shipline.engine.reads import as_utc, run_summary, times
from shipline.engine.runtime import INBOX
from shipline.engine.wiring import RunRecord, SqlAuditLog, SqlStateStore
from shipline.errors import NotFoundError, PermissionDenied, UserError, VoteNotCounted


class RunQueue(Protocol):
    """What the run service needs of the durable engine: queue a run, message a waiting one."""

    def enqueue(self, workflow_id: str, run_id: int) -> None:
        """Queue run `run_id` as workflow `workflow_id`."""
        ...

    def send(self, workflow_id: str, message: dict[str, Any], topic: str) -> None:
        """Deliver `message` to a workflow's `topic`."""
        ...

    def ring(self) -> None:
        """Tell the workers now that something waits for them (a run recorded as queued)."""
        ...


def runs_on_local(spec: PipelineSpec) -> bool:
    """Whether a step of `spec` acts on a `local` target (processes on the machine that asked
    for the run: only that machine's worker may run it)."""
    return any(
        step.params.get("target") == "local" for stage in spec.stages for step in stage.steps
    )


def wake_run(store: SqlStateStore, queue: RunQueue, run_id: int, message: dict[str, Any]) -> None:
    """Tell a run that something happened (a vote, cancellation, a released lock, a canary
    decision). A parked run gets its continuation queued (it holds no worker while it waits);
    a running one is noted, and its current workflow gets the message in its inbox."""
    continuation = store.wake(run_id)
    if continuation is not None:
        queue.enqueue(continuation, run_id)
        return
    record = store.get_run(run_id)
    if record is not None and record.finished_at is None:
        queue.send(record.current_workflow, message, INBOX)


@dataclass
class RunService:
    """Runs of one project: its state store, engine client and audit log."""

    store: SqlStateStore
    client: RunQueue
    audit: SqlAuditLog
    local_queue: str | None = None  # where runs on this machine's `local` targets go
    state_dir: Path | None = None  # where this machine's workers ring a run's followers

    @contextlib.contextmanager
    def pause_for(self, run_id: int) -> Iterator[Callable[[float], object]]:
        """How a command waiting for run `run_id` pauses between looks: like `time.sleep`,
        but woken as soon as a worker of this machine says the run moved."""
        if self.state_dir is None:
            yield time.sleep
            return
        from shipline.doorbell import Follower

        with Follower(self.state_dir, run_id) as follower:
            yield follower.wait

    def start(
        self,
        spec: PipelineSpec,
        *,
        actor: str,
        environment: str | None = None,
        services: dict[str, str] | None = None,
        approvers: dict[str, list[str]] | None = None,
        params: dict[str, Any] | None = None,
        emergency_reason: str | None = None,
    ) -> RunRecord:
        """Record a run, queued for a worker in the same transaction."""
        try:
            stage_order(spec)
        except ValueError as exc:
            raise UserError(f"the pipeline cannot run: {exc}") from exc
        all_params = dict(params or {})
        all_params["approvers"] = approvers or {}
        all_params["requestedBy"] = actor
        if emergency_reason:
            all_params["emergency"] = True
        record = self.store.create_run(
            pipeline=spec.kind,
            environment=environment,
            services=services or {},
            params=all_params,
            spec=spec.model_dump(mode="json"),
            requested_by=actor,
            emergency_reason=emergency_reason,
            queue=self.local_queue if runs_on_local(spec) else None,
        )
        self.audit.append(
            actor,
            "run.start",
            run=record.id,
            pipeline=spec.kind,
            environment=environment,
            services=services or {},
        )
        if emergency_reason:
            self.audit.append(actor, "run.emergency", run=record.id, reason=emergency_reason)
        self.client.ring()  # the store queued it with the record: the workers are told now
        return record

    def get(self, run_id: int, *, spec: bool = True) -> RunRecord:
        """The run (without its pipeline's specification: `spec=False`), or NotFoundError."""
        record = self.store.get_run(run_id, spec=spec)
        if record is None:
            raise _no_run(run_id)
        return record

    def phase(self, run_id: int) -> str:
        """The run's phase, or NotFoundError (its row's one column)."""
        found = self.store.phase_of(run_id)
        if found is None:
            raise _no_run(run_id)
        return found

    def _policies(self, run_id: int, stage: StageSpec) -> list[ApprovalPolicy]:
        """The policies the run recorded for the waiting stage (the run decides whether the
        emergency approvals apply); before it recorded any, the stage's own."""
        row = next((s for s in self.store.stages(run_id) if s["name"] == stage.name), None)
        recorded = ((row or {}).get("outputs") or {}).get("approvalPolicies")
        if recorded is not None:
            return [ApprovalPolicy.model_validate(p) for p in recorded]
        return policies_in_force(stage.approval, None, overridden=False)

    def policies(self, run_id: int, stage: str) -> list[ApprovalPolicy]:
        """The approval policies stage `stage` of the run waits on (its own, and the emergency
        approvals where the run overrode business hours)."""
        spec = PipelineSpec.model_validate(self.get(run_id).spec)
        found = next((s for s in spec.stages if s.name == stage), None)
        if found is None:
            raise NotFoundError(f"run {run_id} has no stage '{stage}'")
        return self._policies(run_id, found)

    def _waiting_stage(self, record: RunRecord, stage: str | None) -> StageSpec:
        spec = PipelineSpec.model_validate(record.spec)
        waiting = [s["name"] for s in self.store.stages(record.id) if s["phase"] == "waiting"]
        candidates = [s for s in spec.stages if s.name in waiting and (s.approval or s.window)]
        if stage is not None:
            candidates = [s for s in candidates if s.name == stage]
        if not candidates:
            where = f" stage '{stage}' of" if stage else ""
            raise UserError(f"nothing in{where} run {record.id} is waiting for approval")
        return candidates[0]

    def vote(
        self,
        run_id: int,
        user: str,
        *,
        approve: bool,
        stage: str | None = None,
        comment: str | None = None,
    ) -> VoteEffect:
        """Approve or reject the waiting stage. A vote the policy forbids is PermissionDenied, one
        that would not count (the same person again, a group already satisfied, out of turn) is
        VoteNotCounted; both are audited with the reason and change nothing."""
        record = self.get(run_id)
        if record.phase not in ("waiting", "running", "pending"):
            raise UserError(f"run {run_id} has already ended ({record.phase})")
        target = self._waiting_stage(record, stage)
        policies = self._policies(record.id, target)
        members: dict[str, list[str]] = record.params.get("approvers", {})
        action = "approval.approve" if approve else "approval.reject"
        # what `audit list --env` finds it by: the stage's environment (a promotion's rung)
        where = {"run": run_id, "stage": target.name,
                 "environment": _environment_of(record, target.name)}  # fmt: skip
        reasons = [check_voter(p, members, user, record.requested_by) for p in policies]
        if approve and all(reasons):
            why = next(r for r in reasons if r)
            self.audit.append(user, "approval.refused", **where, reason=why)
            raise PermissionDenied(why)
        in_any = any(user in members.get(g, ()) for p in policies for g in p.groups)
        if not approve and not in_any:
            why = f"'{user}' is not in any approver group of this stage"
            self.audit.append(user, "approval.refused", **where, reason=why)
            raise PermissionDenied(why)
        now = datetime.now(UTC)
        earlier = [
            Vote(v["user"], bool(v["approve"]), as_utc(v["at"]), v["comment"])
            for v in self.store.votes(run_id, target.name)
        ]
        effect = vote_effect(
            policies, members, earlier, Vote(user, approve, now, comment), record.requested_by, now
        )
        if not effect.counted:
            self.audit.append(
                user, "approval.not-counted", **where, approve=approve, reason=effect.reason
            )
            raise VoteNotCounted(
                f"vote not counted: {effect.reason}",
                hint="still needed: " + ", ".join(effect.waiting_on) if effect.waiting_on else None,
            )
        self.store.add_vote(run_id, target.name, user, approve, comment)
        self.audit.append(user, action, **where, comment=comment)
        wake_run(self.store, self.client, run_id, {"type": "vote"})
        return replace(effect, stage=target.name)

    def canary(
        self,
        run_id: int,
        user: str,
        *,
        promote: bool,
        comment: str | None = None,
        service: str | None = None,
    ) -> str:
        """Promote a canary past its current pause or analysis, or abort it (stable restored):
        that of `service`, or each one running (a stage may run several at once).

        The deploy stage's approver rules apply: only its approvers may decide, and the
        requester may not promote their own run. Returns the canaries' step names.
        """
        record = self.get(run_id)
        if record.phase not in ("waiting", "running"):
            raise UserError(f"run {run_id} is not running ({record.phase})")
        steps = [
            s
            for s in self.store.steps(run_id)
            if s["phase"] == "running" and (s.get("outputs") or {}).get("canary")
        ]
        if not steps:
            raise UserError(f"run {run_id} has no canary running now")
        if service is not None:
            named = [s for s in steps if s["name"] == service]
            if not named:
                running = ", ".join(sorted(s["name"] for s in steps))
                raise UserError(
                    f"run {run_id} has no canary of '{service}' running now",
                    hint=f"running now: {running}",
                )
            steps = named
        spec = PipelineSpec.model_validate(record.spec)
        stage = next(st for st in spec.stages if st.name == steps[0]["stage"])
        members: dict[str, list[str]] = record.params.get("approvers", {})
        action = "canary.promote" if promote else "canary.abort"
        where = {"run": run_id, "environment": _environment_of(record, stage.name)}
        policies = self._policies(run_id, stage)
        reasons = [check_voter(p, members, user, record.requested_by) for p in policies]
        if policies and all(reasons) and (promote or user != record.requested_by):
            why = next(r for r in reasons if r)
            self.audit.append(user, "canary.refused", **where, reason=why)
            raise PermissionDenied(why)
        names = ", ".join(str(s["name"]) for s in steps)
        self.audit.append(user, action, **where, step=names, comment=comment)
        message = {"type": "canary", "action": "promote" if promote else "abort"}
        wake_run(
            self.store, self.client, run_id, {**message, "step": service} if service else message
        )
        return names

    def cancel(self, run_id: int, actor: str, reason: str | None = None) -> None:
        """Ask a run to stop; running steps stop at their next check, waits end at once."""
        record = self.get(run_id)
        why = reason or f"cancelled by {actor}"
        if not self.store.request_cancel(run_id, why):
            raise UserError(f"run {run_id} has already ended ({record.phase})")
        self.audit.append(actor, "run.cancel", run=run_id, reason=why)
        wake_run(self.store, self.client, run_id, {"type": "cancel"})


def _environment_of(record: RunRecord, stage: str) -> str | None:
    """The environment a stage of the run acts on: a promotion's stages are named after their
    rung (`qa:deploy`), every other run's act on the run's own."""
    rung = stage.split(":", 1)[0]
    return rung if ":" in stage and rung in record.environments else record.environment


def run_details(service: RunService, run_id: int) -> dict[str, Any]:
    """A run with its stages, steps (and canary progress), votes and report."""
    record = service.get(run_id, spec=False)  # what it shows of a run is in the run's row
    stages = service.store.stages(run_id)
    steps = service.store.steps(run_id)
    data = run_summary(record)
    data["stages"] = [
        {
            "name": s["name"],
            "phase": s["phase"],
            "reason": s["reason"],
            "outputs": s["outputs"],
            **times(s),
            "steps": [
                {
                    "name": st["name"],
                    "phase": st["phase"],
                    "attempts": st["attempts"],
                    "error": st["error"],
                    **times(st),
                    **_shown_outputs(st.get("outputs")),
                }
                for st in steps
                if st["stage"] == s["name"]
            ],
        }
        for s in stages
    ]
    data["votes"] = [
        {
            "stage": v["stage"],
            "user": v["user"],
            "approve": v["approve"],
            "comment": v["comment"],
            "at": v["at"].isoformat(),
        }
        for v in service.store.votes(run_id)
    ]
    written = [e["message"] for e in service.store.events(run_id, kind="report")]
    data["report"] = written[-1] if written else None
    return data


def _shown_outputs(outputs: Any) -> dict[str, Any]:
    """What a step's outputs add to its line: a canary's progress, and a step's `note` (a one-line
    remark, e.g. a gate that could not run)."""
    if not isinstance(outputs, dict):
        return {}
    return {key: outputs[key] for key in ("canary", NOTE) if key in outputs}


def _no_run(run_id: int) -> NotFoundError:
    """What asking for a run that does not exist says."""
    return NotFoundError(f"no run {run_id}", hint="see `shipline runs list`")
