"""Pipelines as data: stages with dependencies and conditions, steps with timeouts and retries.

A run executes a PipelineSpec. The pure helpers here decide the stage order, whether a stage
runs given its dependencies' results, and the run's final phase.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from shipline.domain.models import ApprovalPolicy, BusinessHours, LockPolicy


class Phase(StrEnum):
    """Where a run, stage or step is. failed = a rule said no; errored = something broke."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ERRORED = "errored"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def done(self) -> bool:
        """True for the phases a run never leaves."""
        return self in TERMINAL


TERMINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.ERRORED, Phase.CANCELLED, Phase.SKIPPED})


class Spec(BaseModel):
    """Base of the pipeline models: immutable, unknown keys refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class RetryPolicy(Spec):
    """How often a step is tried again after a technical error (never after a terminal one)."""

    attempts: int = Field(default=1, ge=1, le=20)
    backoff_seconds: float = Field(default=1.0, ge=0)


class StepSpec(Spec):
    """One step: an action with parameters, or a durable timer."""

    name: str
    kind: Literal["action", "timer", "canary"] = "action"  # canary: the engine drives it
    action: str = "noop"
    params: dict[str, Any] = {}
    timeout_seconds: float | None = Field(default=None, gt=0)
    retry: RetryPolicy = RetryPolicy()


class StageSpec(Spec):
    """A stage: gates (window, approvals, lock), then its steps in order."""

    name: str
    depends_on: list[str] | None = None  # None: the previous stage, as in Azure Pipelines
    condition: Literal["succeeded", "failed", "always"] = "succeeded"
    steps: list[StepSpec] = []
    approval: ApprovalPolicy | None = None
    window: BusinessHours | None = None
    locks: list[str] = []
    lock_policy: LockPolicy = LockPolicy.SEQUENTIAL
    # Keep the locks past this stage until each of these stages has ended (run or skipped):
    # a deploy's (environment, service) locks cover its verification, gates and rollback.
    hold_locks_until: list[str] = []
    parallel: int = Field(default=1, ge=1, le=64)  # steps at once (above 1: a workflow each)
    # Streamed after the stage named here (its only dependency): each step begins as soon as
    # that stage's like-named step succeeded (a service is verified while the next one rolls
    # out). Should that stage not succeed, this one counts as skipped. See `followers`.
    follows: str | None = None


class PipelineSpec(Spec):
    """What a run executes."""

    kind: str
    stages: list[StageSpec]


def dependencies(spec: PipelineSpec) -> dict[str, list[str]]:
    """Each stage's dependencies, with the implicit 'previous stage' made explicit."""
    out: dict[str, list[str]] = {}
    previous: str | None = None
    for stage in spec.stages:
        if stage.depends_on is None:
            out[stage.name] = [previous] if previous else []
        else:
            out[stage.name] = list(stage.depends_on)
        previous = stage.name
    return out


class PipelineError(ValueError):
    """A pipeline that cannot run: unknown dependency, cycle, duplicate stage."""


def stage_order(spec: PipelineSpec) -> list[str]:
    """Stages in an order that respects dependencies (stable: file order among equals)."""
    deps = dependencies(spec)
    names = [s.name for s in spec.stages]
    if len(set(names)) != len(names):
        raise PipelineError("duplicate stage names")
    for stage, needs in deps.items():
        for need in needs:
            if need not in deps:
                raise PipelineError(f"stage '{stage}' depends on unknown stage '{need}'")
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(names):
        ready = [n for n in names if n not in done and all(d in done for d in deps[n])]
        if not ready:
            raise PipelineError("stages depend on each other in a cycle")
        order.append(ready[0])
        done.add(ready[0])
    return order


def followers(spec: PipelineSpec) -> dict[str, StageSpec]:
    """The stages that stream after another one (`follows`), by the stage they follow: those
    whose only dependency is that stage, that run when it succeeded, and have no gates of their
    own (window, approvals, locks) and only actions tried once. A stage that names `follows`
    without being so runs after that stage, as any other."""
    deps = dependencies(spec)
    found: dict[str, StageSpec] = {}
    for stage in spec.stages:
        leader = stage.follows
        if (
            leader is None
            or deps[stage.name] != [leader]
            or stage.condition != "succeeded"
            or stage.window is not None
            or stage.approval is not None
            or stage.locks
            or not stage.steps
            or any(s.kind != "action" or s.retry.attempts != 1 for s in stage.steps)
        ):
            continue
        found.setdefault(leader, stage)
    return found


def should_run(condition: str, needs: list[str], results: Mapping[str, Phase]) -> bool:
    """Azure Pipelines' succeeded() / failed() / always() over the dependencies' results."""
    phases = [results[n] for n in needs]
    if condition == "always":
        return True
    if condition == "failed":
        return any(p in (Phase.FAILED, Phase.ERRORED) for p in phases)
    return all(p == Phase.SUCCEEDED for p in phases)


def run_phase(results: Mapping[str, Phase], cancelled: bool = False) -> Phase:
    """The run's phase from its stages' phases."""
    if cancelled or Phase.CANCELLED in results.values():
        return Phase.CANCELLED
    if Phase.ERRORED in results.values():
        return Phase.ERRORED
    if Phase.FAILED in results.values():
        return Phase.FAILED
    return Phase.SUCCEEDED


def ends_after(
    order: list[str],
    position: int,
    by_name: Mapping[str, StageSpec],
    deps: Mapping[str, list[str]],
    results: Mapping[str, Phase],
    earlier: Collection[str],
) -> dict[str, dict[str, Any]]:
    """For each phase the stage at `position` may end in after which no later stage would
    run: the run's phase then, and the later stages passed over (as `run_workflow` would
    record them); `earlier`: stages recorded before (a later one among them: no end here).
    The stage's own step can then end the run."""
    name = order[position]
    ends: dict[str, dict[str, Any]] = {}
    for phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.ERRORED, Phase.CANCELLED):
        after = {**results, name: phase}
        stopped = phase == Phase.CANCELLED
        passed: list[tuple[str, int, str, str]] = []
        for later_position in range(position + 1, len(order)):
            later = order[later_position]
            if later in earlier:  # recorded in an earlier segment: the run decides
                break
            if not stopped and should_run(by_name[later].condition, deps[later], after):
                break
            after[later] = Phase.CANCELLED if stopped else Phase.SKIPPED
            why = "run cancelled" if stopped else "condition not met"
            passed.append((later, later_position, after[later].value, why))
        else:
            ends[phase.value] = {"phase": run_phase(after, stopped).value, "passed": passed}
    return ends
