"""The canary plan as data, and what an analysis step decides after each interval."""

from __future__ import annotations

import pytest

from shipline.domain.canary import (
    CanaryOutcome,
    IntervalAssessment,
    IntervalVerdict,
    StepKind,
    assess_analysis_step,
    canary_plan,
)
from shipline.domain.models import AnalysisThresholds, CanaryStrategy


def _plan(**strategy: object) -> list[tuple[StepKind, int, float | None, int]]:
    plan = canary_plan(CanaryStrategy.model_validate(strategy))
    return [(s.kind, s.weight, s.seconds, s.intervals) for s in plan]


def test_weights_become_set_weight_and_analysis_of_the_bake() -> None:
    assert _plan(steps=[10, 50, 100], bakeSeconds=3, analysis={"intervalSeconds": 1}) == [
        (StepKind.WEIGHT, 10, None, 0), (StepKind.ANALYSIS, 0, None, 3),
        (StepKind.WEIGHT, 50, None, 0), (StepKind.ANALYSIS, 0, None, 3),
    ]  # fmt: skip


def test_argo_style_steps_are_taken_as_written() -> None:
    steps = [{"setWeight": 20}, {"pause": {"duration": 30}}, {"pause": {}},
             {"analysis": {"intervals": 2}}, {"setWeight": 100}]  # fmt: skip
    assert _plan(steps=steps) == [
        (StepKind.WEIGHT, 20, None, 0), (StepKind.PAUSE, 0, 30.0, 0),
        (StepKind.PAUSE, 0, None, 0), (StepKind.ANALYSIS, 0, None, 2),
    ]  # a weight of 100 ends the plan: promotion  # fmt: skip


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        ([], "needs steps with weights"),
        ([{"pause": {}}], "needs steps with weights"),
        ([50, 20, 100], "must increase"),
        ([10, 50], "end the steps at 100"),
        ([100], "between 1 and 99"),
        ([{"setWeight": 20}, {"setWeight": 100}], "checks the canary"),
        ([{"setWeight": 20}, {"analysis": {}}, {"setWeight": 100}, {"pause": {}}], "after weight"),
    ],
    ids=["empty", "no-weights", "not-increasing", "not-ending-at-100", "no-canary-weight",
         "nothing-gates-it", "steps-after-100"],
)  # fmt: skip
def test_canary_steps_that_cannot_guard_a_promotion_are_refused(
    steps: list[object], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        CanaryStrategy.model_validate({"steps": steps})


V = IntervalVerdict


def _history(*verdicts: IntervalVerdict) -> list[IntervalAssessment]:
    return [IntervalAssessment(v, ("r",), 0.0, 0.0) for v in verdicts]


@pytest.mark.parametrize(
    ("history", "in_step", "planned", "on_inconclusive", "outcome"),
    [
        ((V.SUCCEEDED,), 1, 2, "rollback", CanaryOutcome.CONTINUE),
        ((V.SUCCEEDED, V.INCONCLUSIVE), 2, 2, "rollback", CanaryOutcome.PROMOTE),
        ((V.FAILED, V.FAILED), 2, 3, "rollback", CanaryOutcome.ROLLBACK),
        ((V.INCONCLUSIVE, V.INCONCLUSIVE), 2, 2, "rollback", CanaryOutcome.CONTINUE),
        ((V.INCONCLUSIVE,) * 4, 4, 2, "rollback", CanaryOutcome.ROLLBACK),
        ((V.INCONCLUSIVE,) * 4, 4, 2, "pause", CanaryOutcome.PAUSE),
        ((V.INCONCLUSIVE,) * 4, 4, 2, "promote", CanaryOutcome.PROMOTE),
        ((V.FAILED, V.SUCCEEDED, V.SUCCEEDED), 2, 2, "rollback", CanaryOutcome.PROMOTE),
    ],
    ids=["going-on", "step-passes", "failure-limit", "bakes-longer-when-unsure",
         "inconclusive-then-rollback", "inconclusive-then-pause", "inconclusive-then-promote",
         "failures-count-across-steps"],
)  # fmt: skip
def test_an_analysis_step_decides(
    history: tuple[IntervalVerdict, ...], in_step: int, planned: int, on_inconclusive: str,
    outcome: CanaryOutcome,
) -> None:  # fmt: skip
    thresholds = AnalysisThresholds(failure_limit=2, inconclusive_limit=2,
                                    on_inconclusive=on_inconclusive)  # type: ignore[arg-type]  # fmt: skip
    decision = assess_analysis_step(_history(*history), in_step, planned, thresholds)
    assert decision.outcome == outcome, decision.reason
    if outcome in (CanaryOutcome.ROLLBACK,) and V.FAILED not in history:
        assert "inconclusive" in decision.reason  # too little traffic is never called a failure
