"""A stage that follows another (`follows`): each of its steps begins as soon as the leader's
like-named step succeeded, while the leader's next steps run (a service is verified while the
next one rolls out); its end is recorded as a stage of its own. When the leader fails, the
follower counts as skipped, and what it checked meanwhile is not passed on (a rollback undoes
every service, as when the follower had not run)."""

from __future__ import annotations

import threading
from typing import Any

from shipline.engine.actions import StepContext
from shipline.errors import CheckFailed
from tests.engine_harness import Engine

WAIT = 20.0  # seconds a step waits for another one before it gives up (a bug, not a timing)


def _pipeline(leader: list[str], follower: str = "check") -> list[dict[str, Any]]:
    return [
        {"name": "deploy", "steps": [{"name": s, "action": a}
                                     for s, a in zip(("api", "web"), leader, strict=True)]},
        {"name": "verify", "follows": "deploy", "parallel": 2,
         "steps": [{"name": s, "action": follower} for s in ("api", "web")]},
        {"name": "rollback", "dependsOn": ["deploy", "verify"], "condition": "failed",
         "steps": [{"name": "undo", "action": "undo"}]},
    ]  # fmt: skip


class _Calls:
    def __init__(self, engine: Engine) -> None:
        self.seen: list[str] = []
        self.verified_api = threading.Event()
        self.undo_inputs: dict[str, Any] = {}
        guard = threading.Lock()

        def deploy(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
            with guard:
                self.seen.append(f"deploy/{ctx.step}")
            if ctx.step == "web":  # api's check begins while web still rolls out
                checked = self.verified_api.wait(WAIT)
                with guard:
                    self.seen.append(f"api checked before web ended: {checked}")
            return {ctx.step: "1.1.0"}

        def fail_web(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
            if ctx.step == "web":
                self.verified_api.wait(WAIT)
                raise CheckFailed("web did not become healthy")
            return deploy(ctx, params)

        def check(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
            with guard:
                self.seen.append(f"check/{ctx.step}")
            if ctx.step == "api":
                self.verified_api.set()
            return {f"{ctx.step}.verified": True}

        def unhealthy(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
            check(ctx, params)
            raise CheckFailed(f"{ctx.step} answers 503")

        def undo(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
            self.undo_inputs.update({k: dict(v) for k, v in ctx.inputs.items()})
            return {}

        engine.runtime.actions.update({"deploy": deploy, "fail_web": fail_web, "check": check,
                                       "unhealthy": unhealthy, "undo": undo})  # fmt: skip


def _phases(engine: Engine, run: int) -> dict[str, str]:
    return {s["name"]: s["phase"] for s in engine.store.stages(run)}


def test_a_follower_checks_each_step_while_the_leaders_next_one_runs(engine: Engine) -> None:
    calls = _Calls(engine)
    run = engine.start(_pipeline(["deploy", "deploy"]))
    done = engine.wait(run.id)
    assert done.phase == "succeeded", done.reason
    assert "api checked before web ended: True" in calls.seen
    assert calls.seen.index("check/api") < calls.seen.index("api checked before web ended: True")
    assert _phases(engine, run.id) == {"deploy": "succeeded", "verify": "succeeded",
                                       "rollback": "skipped"}  # fmt: skip
    verify = next(s for s in engine.store.stages(run.id) if s["name"] == "verify")
    assert verify["outputs"] == {"api.verified": True, "web.verified": True}
    steps = [(s["stage"], s["name"], s["phase"]) for s in engine.store.steps(run.id)]
    assert sorted(steps) == [("deploy", "api", "succeeded"), ("deploy", "web", "succeeded"),
                             ("verify", "api", "succeeded"), ("verify", "web", "succeeded")]  # fmt: skip


def test_a_follower_step_begins_once_its_leader_step_hands_on(engine: Engine) -> None:
    """A deploy that rolled its service out hands on, then writes its revision down: its
    service's check begins at the hand-on, not once the deploy step ended."""
    checked = threading.Event()
    seen: dict[str, bool] = {}

    def deploy(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        ctx.hand_on()
        if ctx.step == "web":  # the last one: nothing after it to wait for
            seen["web checked before its deploy step ended"] = checked.wait(WAIT)
        return {ctx.step: "1.1.0"}

    def check(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        if ctx.step == "web":
            checked.set()
        return {f"{ctx.step}.verified": True}

    engine.runtime.actions.update({"handing": deploy, "check": check, "undo": lambda c, p: {}})
    run = engine.start(_pipeline(["handing", "handing"]))
    done = engine.wait(run.id)
    assert done.phase == "succeeded", done.reason
    assert seen == {"web checked before its deploy step ended": True}
    verify = next(s for s in engine.store.stages(run.id) if s["name"] == "verify")
    assert verify["outputs"] == {"api.verified": True, "web.verified": True}


def test_a_failed_leader_leaves_its_follower_skipped_and_its_checks_not_passed_on(
    engine: Engine,
) -> None:
    calls = _Calls(engine)
    run = engine.start(_pipeline(["deploy", "fail_web"]))
    done = engine.wait(run.id)
    assert done.phase == "failed"
    assert done.reason == "deploy: step 'web' failed: web did not become healthy", done.reason
    assert "check/api" in calls.seen and "check/web" not in calls.seen
    assert _phases(engine, run.id) == {"deploy": "failed", "verify": "skipped",
                                       "rollback": "succeeded"}  # fmt: skip
    verify = next(s for s in engine.store.stages(run.id) if s["name"] == "verify")
    assert (
        verify["reason"]
        == "deploy did not succeed; 1 step(s) of this stage ran as theirs succeeded"
    )
    # the rollback sees no verification: it undoes every service, as before streaming
    assert calls.undo_inputs["verify"] == {}
    assert calls.undo_inputs["deploy"] == {"api": "1.1.0"}


def test_a_failed_check_fails_the_follower_and_the_rollback_follows(engine: Engine) -> None:
    calls = _Calls(engine)
    run = engine.start(_pipeline(["deploy", "deploy"], follower="unhealthy"))
    done = engine.wait(run.id)
    assert done.phase == "failed"
    assert done.reason.startswith("verify: step 'api' failed: api answers 503"), done.reason
    assert _phases(engine, run.id) == {"deploy": "succeeded", "verify": "failed",
                                       "rollback": "succeeded"}  # fmt: skip
    assert calls.undo_inputs["verify"] == {}


def test_a_follower_with_a_gate_of_its_own_runs_after_its_leader(engine: Engine) -> None:
    """Streaming is for stages that only follow: one with locks waits for the leader's end."""
    calls = _Calls(engine)
    pipeline = _pipeline(["deploy", "deploy"])
    pipeline[1]["locks"] = ["dev/api"]
    calls.verified_api.set()  # the leader does not wait for the check (it would not come)
    run = engine.start(pipeline)
    assert engine.wait(run.id).phase == "succeeded"
    assert calls.seen.index("check/api") > calls.seen.index("deploy/web")
