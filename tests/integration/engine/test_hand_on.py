"""A step of a one-after-another stage that hands on (`StepContext.hand_on`: its effect made
and succeeded) lets the next step begin while it writes its outcome down; a step whose action
begins early (`BEGIN_EARLY`) begins while the one before acts, behind it; a step that does not
hand on is followed only once it ended, and a failed one is followed by nothing."""

from __future__ import annotations

import threading
from typing import Any

from shipline.engine.actions import BEGIN_EARLY, Action, StepContext
from shipline.errors import CheckFailed, Withdrawn
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
        {"name": s, "action": action, "params": {"service": s}} for s in ("api", "web", "db")
    ]}]  # fmt: skip


def _early(engine: Engine, name: str, act: Action) -> tuple[RunRecord, RunRecord]:
    """Run the three services' stage with `act` registered as `name`, an action whose steps
    begin early; the run as started, and as it ended."""
    BEGIN_EARLY.add(act)
    try:
        engine.runtime.actions[name] = act
        run = engine.start(_two_services(name))
        return run, engine.wait(run.id)
    finally:
        BEGIN_EARLY.discard(act)


def test_a_step_that_begins_early_begins_while_the_one_before_acts_and_is_behind_it(
    engine: Engine,
) -> None:
    web_began = threading.Event()
    seen: dict[str, Any] = {}

    def act(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        service = params["service"]
        if service == "web":
            web_began.set()
        behind = ctx.behind
        seen[f"{service} behind"] = behind.change if behind else None
        made = behind.wait() if behind else True  # waits for the one before to make its effect
        ctx.acting()
        if service == "api":
            seen["web began while api acted"] = web_began.wait(WAIT)
        return {service: made}

    run, done = _early(engine, "early", act)
    assert done.phase == "succeeded", done.reason
    assert seen["web began while api acted"] is True
    assert seen["api behind"] is None  # nothing before it
    assert seen["web behind"] == f"run-{run.id}/deploy/api"  # its change, still being made
    stage = next(s for s in engine.store.stages(run.id) if s["name"] == "deploy")
    assert stage["outputs"] == {"api": True, "web": True, "db": True}


def test_a_step_behind_one_that_failed_is_withdrawn_and_nothing_after_it_begins(
    engine: Engine,
) -> None:
    web_began = threading.Event()
    calls: list[str] = []

    def act(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
        service = params["service"]
        calls.append(service)
        if service == "web":
            web_began.set()
        if ctx.behind is not None and not ctx.behind.wait():
            raise Withdrawn(f"not started: {ctx.behind.change} did not succeed")
        ctx.acting()
        if service == "api":
            web_began.wait(WAIT)
            raise CheckFailed("api: new replica not healthy")
        return {service: "deployed"}

    run, done = _early(engine, "early_failing", act)
    assert done.phase == "failed"
    assert "step 'api' failed: api: new replica not healthy" in done.reason
    assert calls == ["api", "web"]
    steps = {s["name"]: (s["phase"], s["error"]) for s in engine.store.steps(run.id)}
    assert steps == {
        "api": ("failed", "api: new replica not healthy"),
        "web": ("skipped", f"not started: run-{run.id}/deploy/api did not succeed"),
    }
    stage = next(s for s in engine.store.stages(run.id) if s["name"] == "deploy")
    assert stage["phase"] == "failed"
    assert stage["outputs"] == {}  # nothing for a rollback to undo


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
