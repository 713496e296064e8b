"""A step of a one-after-another stage that hands on (`StepContext.hand_on`: its effect made
and succeeded) lets the next step begin while it writes its outcome down; a step that does not
hand on is followed only once it ended, and a failed one is followed by nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from shipline.engine.actions import PREPARERS, Action, StepContext
from shipline.errors import CheckFailed
from shipline.store.sql import RunRecord
from tests.engine_harness import Engine

WAIT = 20.0  # seconds a step waits for the other one before it gives up (a bug, not a timing)


def _stage(*steps: str) -> list[dict[str, Any]]:
    return [{"name": "deploy", "steps": [{"name": s, "action": s} for s in steps]}]


def test_the_next_step_begins_once_the_one_before_hands_on(engine: Engine) -> None:
    began = threading.Event()
    seen: dict[str, bool] = {}

    def first(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        ctx.hand_on()
        # still writing down: the next step has begun meanwhile
        seen["second began before first ended"] = began.wait(WAIT)
        return {"first": "done"}

    def second(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        began.set()
        return {"second": "done"}

    engine.runtime.actions.update({"first": first, "second": second})
    run = engine.start(_stage("first", "second"))
    done = engine.wait(run.id)
    assert done.phase == "succeeded", done.reason
    assert seen == {"second began before first ended": True}
    steps = {s["name"]: s["phase"] for s in engine.store.steps(run.id)}
    assert steps == {"first": "succeeded", "second": "succeeded"}


def test_a_step_that_does_not_hand_on_is_followed_once_it_ended(engine: Engine) -> None:
    order: list[str] = []
    guard = threading.Lock()

    def step(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        with guard:
            order.append(f"{ctx.step} began")
        threading.Event().wait(0.05)  # room for the next one to begin too early
        with guard:
            order.append(f"{ctx.step} ended")
        return {}

    engine.runtime.actions.update({"a": step, "b": step, "c": step})
    run = engine.start(_stage("a", "b", "c"))
    assert engine.wait(run.id).phase == "succeeded"
    assert order == ["a began", "a ended", "b began", "b ended", "c began", "c ended"]


def test_a_step_that_fails_after_handing_on_fails_its_stage_and_keeps_the_next_ones_outputs(
    engine: Engine,
) -> None:
    """What the step handed on to acted: its outputs stay with the stage (a rollback reads
    them), and nothing after it begins."""
    ended = threading.Event()
    calls: list[str] = []

    def first(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        calls.append("first")
        ctx.hand_on()
        ended.wait(WAIT)
        raise CheckFailed("its revision could not be written down")

    def second(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        calls.append("second")
        ended.set()
        return {"second": "deployed"}

    def third(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        calls.append("third")
        return {}

    engine.runtime.actions.update({"first": first, "second": second, "third": third})
    run = engine.start(_stage("first", "second", "third"))
    done = engine.wait(run.id)
    assert done.phase == "failed"
    assert "step 'first' failed: its revision could not be written down" in done.reason
    assert sorted(calls) == ["first", "second"]
    steps = {s["name"]: s["phase"] for s in engine.store.steps(run.id)}
    assert steps == {"first": "failed", "second": "succeeded"}
    stage = next(s for s in engine.store.stages(run.id) if s["name"] == "deploy")
    assert stage["phase"] == "failed"
    assert stage["outputs"] == {"second": "deployed"}


def test_a_failed_step_that_did_not_hand_on_is_followed_by_nothing(engine: Engine) -> None:
    calls: list[str] = []

    def failing(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        calls.append(ctx.step)
        raise CheckFailed("not healthy")

    def later(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        calls.append(ctx.step)
        return {}

    engine.runtime.actions.update({"failing": failing, "later": later})
    run = engine.start(_stage("failing", "later"))
    assert engine.wait(run.id).phase == "failed"
    assert calls == ["failing"]
    assert {s["name"] for s in engine.store.steps(run.id)} == {"failing"}


def _two_services(action: str) -> list[dict[str, Any]]:
    return [{"name": "deploy", "steps": [
        {"name": s, "action": action, "params": {"service": s}} for s in ("api", "web")
    ]}]  # fmt: skip


def _with_preparer(
    engine: Engine, name: str, act: Action, prepare: Callable[[dict[str, Any]], Any]
) -> tuple[RunRecord, RunRecord]:
    """Run the two services' stage with `act` registered as `name` and prepared by `prepare`;
    the run as started, and as it ended."""
    PREPARERS[act] = prepare
    try:
        engine.runtime.actions[name] = act
        run = engine.start(_two_services(name))
        return run, engine.wait(run.id)
    finally:
        PREPARERS.pop(act)


def test_the_next_step_is_prepared_while_the_one_before_runs(engine: Engine) -> None:
    prepared = threading.Event()
    seen: dict[str, Any] = {}

    def prepare(params: dict[str, Any]) -> dict[str, str]:
        prepared.set()
        return {"observed": params["service"]}

    def act(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        if params["service"] == "api":
            ctx.acting()  # waits on its effect: the next step is prepared meanwhile
            seen["web prepared while api ran"] = prepared.wait(WAIT)
        return {params["service"]: ctx.prepared()}

    run, done = _with_preparer(engine, "prepared", act, prepare)
    assert done.phase == "succeeded", done.reason
    assert seen == {"web prepared while api ran": True}
    stage = next(s for s in engine.store.stages(run.id) if s["name"] == "deploy")
    # the first step is not prepared (nothing ran before it); the second uses what was
    assert stage["outputs"] == {"api": None, "web": {"observed": "web"}}


def test_a_failed_preparation_leaves_the_step_to_read_for_itself(engine: Engine) -> None:
    def prepare(params: dict[str, Any]) -> None:
        raise RuntimeError("the target did not answer")

    def act(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        return {params["service"]: ctx.prepared() or "read by the step"}

    run, done = _with_preparer(engine, "unprepared", act, prepare)
    assert done.phase == "succeeded", done.reason
    stage = next(s for s in engine.store.stages(run.id) if s["name"] == "deploy")
    assert stage["outputs"] == {"api": "read by the step", "web": "read by the step"}


def test_steps_that_hand_on_without_acting_each_write_themselves_down(engine: Engine) -> None:
    """As deploys of services already in sync: each hands on with nothing to wait on. The one
    before is released by the next one's hand-on, not only by its acting."""

    def in_sync(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        ctx.hand_on()
        return {ctx.step: "in sync"}

    engine.runtime.actions["in_sync"] = in_sync
    run = engine.start([{"name": "deploy", "steps": [
        {"name": s, "action": "in_sync"} for s in ("a", "b", "c", "d")
    ]}])  # fmt: skip
    done = engine.wait(run.id, timeout=20)
    assert done.phase == "succeeded", done.reason
    stage = next(s for s in engine.store.stages(run.id) if s["name"] == "deploy")
    assert stage["outputs"] == {s: "in sync" for s in ("a", "b", "c", "d")}
