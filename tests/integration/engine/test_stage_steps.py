"""A stage of once-tried actions is one durable step (ADR 0017): the checkpoints a run takes,
the records it leaves (each once), and a batch run again after a crash acting only for the
steps with no recorded outcome."""

from __future__ import annotations

import threading
import time
from typing import Any

from dbos import DBOS

from shipline.domain.pipeline import StageSpec
from shipline.engine import workflow
from tests.engine_harness import Engine

PIPELINE = [
    {"name": "validate", "steps": [{"name": "plan", "action": "noop"}]},
    {
        "name": "deploy",
        "dependsOn": ["validate"],
        "locks": ["dev/api", "dev/web"],
        "holdLocksUntil": ["verify", "rollback"],
        "steps": [{"name": "api", "action": "count"}, {"name": "web", "action": "count"}],
    },
    {
        "name": "verify",
        "dependsOn": ["deploy"],
        "parallel": 2,
        "steps": [{"name": "api", "action": "count"}, {"name": "web", "action": "count"}],
    },
    {
        "name": "rollback",
        "dependsOn": ["deploy", "verify"],
        "condition": "failed",
        "steps": [{"name": "api", "action": "count"}],
    },
]


def _counting(engine: Engine) -> dict[str, int]:
    calls: dict[str, int] = {}
    guard = threading.Lock()

    def count(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        with guard:
            key = f"{ctx.stage}/{ctx.step}"
            calls[key] = calls.get(key, 0) + 1
        ctx.log(f"{ctx.step} counted")
        return {ctx.step: "done"}

    engine.runtime.actions["count"] = count
    return calls


def test_a_run_checkpoints_once_per_stage_and_records_everything_once(engine: Engine) -> None:
    calls = _counting(engine)
    run = engine.start(PIPELINE)
    done = engine.wait(run.id)
    assert done.phase == "succeeded", done.reason

    workflow_id = f"shipline-run-{run.id}"
    DBOS.retrieve_workflow(workflow_id).get_result()  # its last checkpoint follows the run's end
    names = [s["function_name"] for s in DBOS.list_workflow_steps(workflow_id)]
    assert names == [
        "shipline.load",  # and the run's start
        "shipline.stage-steps",  # validate: start, step, end
        "shipline.stage-steps",  # deploy: start, locks, steps, end
        # verify: start, both steps side by side, end; then rollback passed over and the run's
        # end (nothing else would run after it)
        "shipline.stage-steps",
    ], names

    assert calls == {"deploy/api": 1, "deploy/web": 1, "verify/api": 1, "verify/web": 1}
    assert engine.store.lock_holders() == []  # released by the step that ended the run
    stages = {s["name"]: s for s in engine.store.stages(run.id)}
    assert {n: s["phase"] for n, s in stages.items()} == {
        "validate": "succeeded", "deploy": "succeeded", "verify": "succeeded",
        "rollback": "skipped",
    }  # fmt: skip
    assert stages["verify"]["outputs"] == {"api": "done", "web": "done"}
    kinds = [(e["kind"], e["stage"]) for e in engine.store.events(run.id) if e["step"] is None]
    assert kinds == [
        ("run.started", None),
        ("stage.running", "validate"), ("stage.succeeded", "validate"),
        ("stage.running", "deploy"), ("lock.acquired", None), ("stage.succeeded", "deploy"),
        ("stage.running", "verify"), ("stage.succeeded", "verify"),
        ("stage.skipped", "rollback"),
        ("run.succeeded", None),
    ], kinds  # fmt: skip
    lines = [(r["stage"], r["step"], r["line"]) for r in engine.store.logs(run.id)]
    assert sorted(lines) == sorted(
        (stage, step, f"{step} counted")
        for stage in ("deploy", "verify")
        for step in ("api", "web")
    )


def _rung(env: str, after: str | None) -> list[dict[str, Any]]:
    """One environment of a promotion: its deploy (holding its locks until its rollback guard
    has passed), its verification and its rollback guard."""
    return [
        {
            "name": f"{env}:deploy",
            "dependsOn": [after] if after else [],
            "locks": [f"{env}/api"],
            "holdLocksUntil": [f"{env}:verify", f"{env}:rollback"],
            "steps": [{"name": "api", "action": "count"}],
        },
        {"name": f"{env}:verify", "dependsOn": [f"{env}:deploy"], "follows": f"{env}:deploy",
         "steps": [{"name": "api", "action": "count"}]},
        {"name": f"{env}:rollback", "dependsOn": [f"{env}:deploy", f"{env}:verify"],
         "condition": "failed", "steps": [{"name": "api", "action": "count"}]},
    ]  # fmt: skip


def test_the_next_environment_releases_the_locks_of_the_one_before_in_its_first_step(
    engine: Engine,
) -> None:
    """Once an environment's rollback guard is passed over, its locks are released and its
    guard recorded by the next environment's first step (with its try for its own locks), not
    by a step each; and they are released before that environment deploys."""
    calls = _counting(engine)
    counting = engine.runtime.actions["count"]
    held: list[list[str]] = []

    def count(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        if ctx.stage == "qa:deploy":
            held.append(sorted(str(e["key"]) for e in engine.store.lock_holders()
                               if e["state"] == "holding"))  # fmt: skip
        return counting(ctx, params)

    engine.runtime.actions["count"] = count
    run = engine.start([*_rung("dev", None), *_rung("qa", "dev:verify")])
    done = engine.wait(run.id)
    assert done.phase == "succeeded", done.reason

    workflow_id = f"shipline-run-{run.id}"
    DBOS.retrieve_workflow(workflow_id).get_result()
    names = [s["function_name"] for s in DBOS.list_workflow_steps(workflow_id)]
    assert names == [
        "shipline.load",
        "shipline.stage-steps",  # dev:deploy, dev:verify streamed beside it
        # dev:rollback passed over and dev's lock released, qa:deploy's lock, steps and end,
        # qa:verify beside it
        "shipline.stage-steps",
        "shipline.finish",  # qa:rollback passed over, the run's end
    ], names
    assert held == [["qa/api"]]  # dev's lock was released before qa deployed
    assert engine.store.lock_holders() == []
    assert calls == {"dev:deploy/api": 1, "dev:verify/api": 1, "qa:deploy/api": 1,
                     "qa:verify/api": 1}  # fmt: skip
    kinds = [(e["kind"], e["stage"]) for e in engine.store.events(run.id)
             if e["step"] is None and e["kind"].startswith("stage.")]  # fmt: skip
    assert kinds.index(("stage.skipped", "dev:rollback")) < kinds.index(
        ("stage.running", "qa:deploy")
    ), kinds


def test_a_run_woken_by_its_approval_goes_on_in_three_checkpoints(
    engine: Engine,
) -> None:
    """The continuation takes the run over and looks at the votes in one step, and records
    that the stage goes on, takes its locks and runs its steps in the next."""
    calls = _counting(engine)
    gated = [dict(PIPELINE[0]), {**PIPELINE[1], "approval": {"groups": ["cab"]}}, *PIPELINE[2:]]
    run = engine.start(gated, approvers={"cab": ["casey"]})
    engine.wait_stage(run.id, "deploy", "waiting")
    end = time.monotonic() + 30
    while not engine.store.get_run(run.id).parked:  # type: ignore[union-attr]
        assert time.monotonic() < end, "the run never parked"
        time.sleep(0.02)
    engine.service.vote(run.id, "casey", approve=True)
    assert engine.wait(run.id).phase == "succeeded"

    continuation = f"shipline-run-{run.id}.1"
    DBOS.retrieve_workflow(continuation).get_result()
    names = [s["function_name"] for s in DBOS.list_workflow_steps(continuation)]
    assert names == [
        "shipline.load",  # the run taken over, and the votes it was woken for
        "shipline.stage-steps",  # deploy goes on (approved), takes its locks; steps, end
        "shipline.stage-steps",  # verify, rollback passed over, the run's end
    ], names
    assert calls == {"deploy/api": 1, "deploy/web": 1, "verify/api": 1, "verify/web": 1}
    deploy = [e["kind"] for e in engine.store.events(run.id)
              if e["stage"] == "deploy" and e["step"] is None]  # fmt: skip
    assert deploy == ["stage.running", "stage.waiting", "stage.running", "stage.succeeded"]
    assert "approved by casey" in next(
        e["message"] for e in engine.store.events(run.id)
        if e["stage"] == "deploy" and e["kind"] == "stage.running" and e["message"] != "stage started"
    )  # fmt: skip


def test_a_run_queued_for_its_locks_takes_them_and_deploys_in_one_step_when_woken(
    engine: Engine,
) -> None:
    """A stage whose try for its locks finds them held parks the run; woken when the holder
    lets go, its continuation tries again and, holding them, runs the steps in that step."""
    calls = _counting(engine)
    let_go = threading.Event()

    def hold(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        assert let_go.wait(60), "never let go"
        return {}

    engine.runtime.actions["hold"] = hold
    holding = [*PIPELINE[:2], {**PIPELINE[2], "steps": [{"name": "api", "action": "hold"}]}]
    first = engine.start(holding)
    engine.wait_stage(first.id, "verify", "running")  # deploy done: the locks are held
    second = engine.start(PIPELINE)
    end = time.monotonic() + 30
    while not engine.store.get_run(second.id).parked:  # type: ignore[union-attr]
        assert time.monotonic() < end, "the second run never parked at the locks"
        time.sleep(0.02)
    let_go.set()
    assert engine.wait(first.id).phase == "succeeded"
    assert engine.wait(second.id).phase == "succeeded"

    queued = f"shipline-run-{second.id}"
    DBOS.retrieve_workflow(queued).get_result()
    assert [s["function_name"] for s in DBOS.list_workflow_steps(queued)] == [
        "shipline.load",
        "shipline.stage-steps",  # validate
        "shipline.stage-steps",  # deploy: start, its locks held by the first run: queued
        "shipline.park",
    ]
    continuation = f"shipline-run-{second.id}.1"
    DBOS.retrieve_workflow(continuation).get_result()
    assert [s["function_name"] for s in DBOS.list_workflow_steps(continuation)] == [
        "shipline.load",
        "shipline.stage-steps",  # deploy: the locks taken, steps, end
        "shipline.stage-steps",  # verify, rollback passed over, the run's end
    ]
    # the first run's deploy and the second's, each once; the second's verify once
    assert calls == {"deploy/api": 2, "deploy/web": 2, "verify/api": 1, "verify/web": 1}
    starts = [e for e in engine.store.events(second.id)
              if e["stage"] == "deploy" and e["step"] is None]  # fmt: skip
    assert [e["kind"] for e in starts] == ["stage.running", "stage.succeeded"]
    assert engine.store.lock_holders() == []


def test_a_run_that_fails_at_its_last_stage_ends_in_that_stages_step(engine: Engine) -> None:
    """Nothing runs after the failed stage: its step records the stages passed over, the
    report, the audit record and the run's end (each once), with the run's reasons."""
    calls = _counting(engine)
    failing = {
        "name": "verify",
        "dependsOn": ["deploy"],
        "steps": [{"name": "api", "action": "fail", "params": {"message": "503"}}],
    }
    later = {
        "name": "smoke",
        "dependsOn": ["verify"],
        "steps": [{"name": "api", "action": "count"}],
    }
    run = engine.start([PIPELINE[0], {**PIPELINE[1], "locks": []}, failing, later])  # fmt: skip
    done = engine.wait(run.id)
    assert done.phase == "failed"
    assert done.reason == "verify: step 'api' failed: 503", done.reason

    DBOS.retrieve_workflow(f"shipline-run-{run.id}").get_result()
    names = [s["function_name"] for s in DBOS.list_workflow_steps(f"shipline-run-{run.id}")]
    assert names == ["shipline.load"] + ["shipline.stage-steps"] * 3, names
    assert calls == {"deploy/api": 1, "deploy/web": 1}
    kinds = [(e["kind"], e["stage"]) for e in engine.store.events(run.id) if e["step"] is None]
    assert kinds[-3:] == [("stage.failed", "verify"), ("stage.skipped", "smoke"),
                          ("run.failed", None)], kinds  # fmt: skip
    ends = [r for r in engine.runtime.audit.records()
            if r["action"] == "run.finish" and r["details"].get("run") == run.id]  # fmt: skip
    assert [r["details"]["phase"] for r in ends] == ["failed"]


def test_a_batch_run_again_acts_only_for_steps_without_an_outcome(engine: Engine) -> None:
    """As after a worker killed inside the batch: `web` had started, `api` had ended."""
    calls = _counting(engine)
    run = engine.start(PIPELINE[:1])
    assert engine.wait(run.id).phase == "succeeded"
    engine.store.save_step(run.id, "deploy", "api", position=0, phase="succeeded",
                           attempts=1, finished_at=engine.runtime.clock(),
                           outputs={"api": "before the crash"})  # fmt: skip
    engine.store.save_step(run.id, "deploy", "web", position=1, phase="running", attempts=1)
    items = workflow._items(StageSpec.model_validate(PIPELINE[1]).steps)

    for parallel in (1, 2):
        results = workflow._run_steps(run.id, "deploy", items, {}, parallel)
        assert [r["phase"] for r in results] == ["succeeded", "succeeded"]
        assert results[0]["outputs"] == {"api": "before the crash"}  # recorded, not acted again
        assert calls == {"deploy/web": 1}  # acted once: the second pass found its outcome
