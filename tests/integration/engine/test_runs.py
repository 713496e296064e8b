"""Runs on the durable engine: stages, conditions, outputs, retries, timeouts, cancellation."""

from __future__ import annotations

import itertools
from typing import Any

from tests.engine_harness import Engine


def _step(name: str, action: str = "noop", **kw: Any) -> dict[str, Any]:
    return {"name": name, "action": action, **kw}


def test_stages_run_in_order_and_pass_outputs(engine: Engine) -> None:
    def read_input(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {"seen": ctx.inputs["build"]["image"]}

    engine.runtime.actions["read-input"] = read_input
    run = engine.start(
        [
            {
                "name": "build",
                "steps": [_step("compile", params={"outputs": {"image": "api:1.2.3"}})],
            },
            {"name": "deploy", "steps": [_step("use", "read-input")]},
        ]
    )
    done = engine.wait(run.id)
    assert done.phase == "succeeded", done.reason
    stages = {s["name"]: s for s in engine.store.stages(run.id)}
    assert stages["deploy"]["outputs"] == {"seen": "api:1.2.3"}
    kinds = [e["kind"] for e in engine.store.events(run.id)]
    assert kinds[0] == "run.started" and kinds[-1] == "run.succeeded"


def test_conditions_succeeded_failed_always(engine: Engine) -> None:
    run = engine.start(
        [
            {
                "name": "deploy",
                "steps": [_step("apply", "fail", params={"message": "health said no"})],
            },
            {"name": "verify", "steps": [_step("check")]},
            {
                "name": "rollback",
                "dependsOn": ["deploy"],
                "condition": "failed",
                "steps": [_step("undo")],
            },
            {
                "name": "report",
                "dependsOn": ["deploy"],
                "condition": "always",
                "steps": [_step("tell")],
            },
        ]
    )
    done = engine.wait(run.id)
    assert done.phase == "failed"
    phases = {s["name"]: s["phase"] for s in engine.store.stages(run.id)}
    assert phases == {
        "deploy": "failed",
        "verify": "skipped",
        "rollback": "succeeded",
        "report": "succeeded",
    }
    assert "health said no" in (done.reason or "")


def test_technical_error_is_errored_not_failed(engine: Engine) -> None:
    run = engine.start(
        [{"name": "s", "steps": [_step("boom", "fail", params={"technical": True})]}]
    )
    assert engine.wait(run.id).phase == "errored"


def test_retry_policy_retries_technical_errors(engine: Engine) -> None:
    run = engine.start(
        [
            {
                "name": "s",
                "steps": [
                    _step(
                        "flaky",
                        "flaky",
                        params={"failures": 2},
                        retry={"attempts": 3, "backoff_seconds": 0.05},
                    ),
                ],
            }
        ]
    )
    assert engine.wait(run.id).phase == "succeeded"
    step = engine.store.steps(run.id)[0]
    assert step["attempts"] == 3 and step["outputs"] == {"attempts": 3}
    # Each attempt is a durable step of its own, the backoff a durable sleep between them.
    from dbos import DBOS

    names = [s["function_name"] for s in DBOS.list_workflow_steps(f"shipline-run-{run.id}")]
    assert names.count("shipline.step") == 3 and names.count("DBOS.sleep") == 2, names[3:]
    retrying = [e for e in engine.store.events(run.id) if e["kind"] == "step.retrying"]
    assert [e["message"].split(":")[0] for e in retrying] == [
        "attempt 1 errored",
        "attempt 2 errored",
    ]


def test_rule_errors_are_not_retried(engine: Engine) -> None:
    run = engine.start(
        [{"name": "s", "steps": [_step("no", "fail", retry={"attempts": 5, "backoff_seconds": 0})]}]
    )
    assert engine.wait(run.id).phase == "failed"
    assert engine.store.steps(run.id)[0]["attempts"] == 1


def test_step_timeout(engine: Engine) -> None:
    run = engine.start(
        [
            {
                "name": "s",
                "steps": [_step("slow", "wait", params={"seconds": 5}, timeout_seconds=0.3)],
            }
        ]
    )
    done = engine.wait(run.id)
    assert done.phase == "errored"
    assert "timed out" in (engine.store.steps(run.id)[0]["error"] or "")


def test_cancel_stops_a_running_step_and_skips_the_rest(engine: Engine) -> None:
    run = engine.start(
        [
            {"name": "a", "steps": [_step("long", "wait", params={"seconds": 20})]},
            {"name": "b", "steps": [_step("never")]},
        ]
    )
    engine.wait_stage(run.id, "a", "running")
    engine.service.cancel(run.id, "ann")
    done = engine.wait(run.id)
    assert done.phase == "cancelled"
    phases = {s["name"]: s["phase"] for s in engine.store.stages(run.id)}
    assert phases == {"a": "cancelled", "b": "cancelled"}


def test_timer_is_durable_and_cancellable(engine: Engine) -> None:
    run = engine.start(
        [{"name": "bake", "steps": [{"name": "t", "kind": "timer", "params": {"seconds": 30}}]}]
    )
    engine.wait_stage(run.id, "bake", "running")
    engine.service.cancel(run.id, "ann")
    assert engine.wait(run.id).phase == "cancelled"
    short = engine.start(
        [{"name": "bake", "steps": [{"name": "t", "kind": "timer", "params": {"seconds": 0.2}}]}]
    )
    assert engine.wait(short.id).phase == "succeeded"


def test_script_logs_are_kept(engine: Engine) -> None:
    run = engine.start(
        [
            {
                "name": "s",
                "steps": [
                    _step("sh", "script", params={"argv": ["sh", "-c", "echo hello; echo world"]})
                ],
            }
        ]
    )
    assert engine.wait(run.id).phase == "succeeded"
    assert [line["line"] for line in engine.store.logs(run.id)] == ["hello", "world"]


def test_unknown_action_errors_the_step_not_the_engine(engine: Engine) -> None:
    run = engine.start([{"name": "s", "steps": [_step("x", "no-such-action")]}])
    done = engine.wait(run.id)
    assert done.phase == "errored"
    assert "unknown step action 'no-such-action'" in (engine.store.steps(run.id)[0]["error"] or "")


def test_parallel_stage_runs_steps_together_and_all_of_them(engine: Engine) -> None:
    steps = [_step(f"s{i}", "wait", params={"seconds": 0.4}) for i in range(4)]
    steps.append(_step("broken", "fail"))
    steps.append(_step("after", params={"outputs": {"last": True}}))
    run = engine.start([{"name": "build", "parallel": 3, "steps": steps}])
    done = engine.wait(run.id)
    assert done.phase == "failed"
    records = {s["name"]: s for s in engine.store.steps(run.id)}
    assert records["broken"]["phase"] == "failed"
    assert {records[f"s{i}"]["phase"] for i in range(4)} == {"succeeded"}
    assert records["after"]["phase"] == "succeeded"  # a failure does not stop the others
    spans = sorted(
        (records[f"s{i}"]["started_at"], records[f"s{i}"]["finished_at"]) for i in range(4)
    )
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), "no two steps overlapped"
    running = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert running <= 3
    stage = engine.store.stages(run.id)[0]
    assert stage["outputs"] == {"last": True}
