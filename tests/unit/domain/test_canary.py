"""Canary analysis, table-driven: intervals against thresholds and the stable version."""

from __future__ import annotations

import pytest

from shipline.domain.canary import (
    CanaryOutcome,
    IntervalVerdict,
    Sample,
    assess_canary,
    assess_interval,
    canary_seconds,
    percentile,
    rolling_instead,
)
from shipline.domain.models import AnalysisThresholds, CanaryStrategy

T = AnalysisThresholds(
    max_error_rate=0.05, max_p95_latency_ms=500, failure_limit=2, interval_seconds=1
)
FAST = tuple([50.0] * 95 + [120.0] * 5)
SLOW = tuple([900.0] * 100)


@pytest.mark.parametrize(
    ("canary", "stable", "verdict"),
    [
        (Sample(100, 0, FAST), Sample(100, 0, FAST), IntervalVerdict.SUCCEEDED),
        (Sample(100, 50, FAST), Sample(100, 0, FAST), IntervalVerdict.FAILED),
        (Sample(100, 5, FAST), Sample(100, 0, FAST), IntervalVerdict.SUCCEEDED),  # at the threshold
        (Sample(100, 6, FAST), Sample(100, 0, FAST), IntervalVerdict.FAILED),
        (Sample(100, 50, FAST), Sample(100, 50, FAST), IntervalVerdict.INCONCLUSIVE),  # both broken
        (
            Sample(5, 5, FAST),
            Sample(100, 0, FAST),
            IntervalVerdict.INCONCLUSIVE,
        ),  # too little traffic
        (Sample(100, 0, SLOW), Sample(100, 0, FAST), IntervalVerdict.FAILED),
        (Sample(100, 0, SLOW), Sample(100, 0, SLOW), IntervalVerdict.INCONCLUSIVE),
        (
            Sample(100, 50, FAST),
            Sample(3, 3, FAST),
            IntervalVerdict.FAILED,
        ),  # stable too quiet to excuse
    ],
    ids=[
        "healthy",
        "errors",
        "at-threshold",
        "above-threshold",
        "shared-errors",
        "too-little-traffic",
        "slow",
        "shared-slowness",
        "stable-quiet",
    ],
)
def test_interval(canary: Sample, stable: Sample, verdict: IntervalVerdict) -> None:
    result = assess_interval(canary, stable, T)
    assert result.verdict == verdict, result.reasons
    assert result.reasons


@pytest.mark.parametrize(
    ("verdicts", "required", "outcome"),
    [
        ([], 1, CanaryOutcome.CONTINUE),
        (["s"], 1, CanaryOutcome.PROMOTE),
        (["s"], 3, CanaryOutcome.CONTINUE),
        (["f"], 1, CanaryOutcome.CONTINUE),  # one failure is under the limit of 2
        (["f", "f"], 1, CanaryOutcome.ROLLBACK),
        (["f", "s", "f"], 5, CanaryOutcome.ROLLBACK),
        (["i", "i", "i"], 1, CanaryOutcome.CONTINUE),
        (["f", "i", "s"], 1, CanaryOutcome.PROMOTE),
    ],
)
def test_canary_decision(verdicts: list[str], required: int, outcome: CanaryOutcome) -> None:
    samples = {"s": Sample(100, 0, FAST), "f": Sample(100, 50, FAST), "i": Sample(1, 0, FAST)}
    assessments = [assess_interval(samples[v], Sample(100, 0, FAST), T) for v in verdicts]
    decision = assess_canary(assessments, T, intervals_required=required)
    assert decision.outcome == outcome, decision.reason
    assert decision.failed == verdicts.count("f")


def test_rollback_reason_names_the_failure() -> None:
    bad = assess_interval(Sample(100, 50, FAST), Sample(100, 0, FAST), T)
    decision = assess_canary([bad, bad], T)
    assert decision.reason == "2 failed interval(s) (limit 2): canary error rate 50.0% above 5.0%"


def test_percentile() -> None:
    assert percentile([], 95) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile(list(map(float, range(1, 101))), 95) == 95.0
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize(
    ("stable", "routes", "why"),
    [
        (None, True, "first deploy"),
        ("2.0.0", True, "same version as stable"),
        ("1.0.0", False, "target type 'x' routes no traffic by weight"),
        ("1.0.0", True, None),
    ],
)
def test_a_canary_rolls_instead_without_a_stable_to_compare_against(
    stable: str | None, routes: bool, why: str | None
) -> None:
    assert rolling_instead(stable, "2.0.0", routes=routes, target="target type 'x'") == why


@pytest.mark.parametrize(
    ("strategy", "seconds"),
    [
        ({}, 600.0),  # [10, 50, 100]: two weights, each baked 300 s
        ({"steps": [50, 100], "bakeSeconds": 90, "analysis": {"intervalSeconds": 60}}, 120.0),
        ({"steps": [{"setWeight": 20}, {"pause": {"duration": 30}},
                    {"analysis": {"intervals": 3}}, {"setWeight": 100}]}, 210.0),
        ({"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]}, None),
    ],
)  # fmt: skip
def test_a_canary_lasts_its_analyses_and_timed_pauses(
    strategy: dict[str, object], seconds: float | None
) -> None:
    assert canary_seconds(CanaryStrategy.model_validate(strategy)) == seconds
