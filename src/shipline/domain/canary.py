"""Canary analysis: is the new version worse than the stable one? Pure functions over samples.

Per interval, the canary's error rate and p95 latency are compared with thresholds and with the
stable version measured over the same interval (so a problem both share, such as a broken
database, is not blamed on the canary). Intervals with too little canary traffic are
inconclusive. Enough failed intervals roll back; enough good ones promote.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from shipline.domain.models import (
    AnalysisStep,
    AnalysisThresholds,
    CanaryStrategy,
    PauseStep,
    SetWeightStep,
)


class IntervalVerdict(StrEnum):
    """What one analysis interval says."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


class CanaryOutcome(StrEnum):
    """What to do with the canary now."""

    CONTINUE = "continue"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    PAUSE = "pause"  # wait for a person: `shipline canary promote | abort`


@dataclass(frozen=True)
class Sample:
    """Responses of one version over one interval: counts and latencies in milliseconds."""

    requests: int
    errors: int  # 5xx and connection failures
    latencies_ms: tuple[float, ...] = ()
    p95_ms: float | None = None  # when the source gives the percentile, not the latencies

    @property
    def p95(self) -> float | None:
        """The 95th percentile latency: given, or from the latencies."""
        return self.p95_ms if self.p95_ms is not None else percentile(self.latencies_ms, 95)

    @property
    def error_rate(self) -> float:
        """Errors per request (0 without requests)."""
        return self.errors / self.requests if self.requests else 0.0


def rolling_instead(
    stable: str | None, version: str, *, routes: bool = True, target: str = "the target"
) -> str | None:
    """Why `version` goes out as a plain rolling update where a canary was asked, or None
    when it goes out as a canary. A canary is judged against a stable version other than its
    own, running behind a target that routes traffic by weight (`routes`; `target` names it)."""
    if stable is None:
        return "first deploy"
    if stable == version:
        return "same version as stable"
    if not routes:
        return f"{target} routes no traffic by weight"
    return None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100, nearest rank); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class IntervalAssessment:
    """One interval's verdict and the figures behind it."""

    verdict: IntervalVerdict
    reasons: tuple[str, ...]
    canary_error_rate: float
    stable_error_rate: float
    canary_p95_ms: float | None = None
    stable_p95_ms: float | None = None


def assess_interval(
    canary: Sample, stable: Sample, thresholds: AnalysisThresholds
) -> IntervalAssessment:
    """Judge one interval of canary traffic against the thresholds and the stable version.

    Fewer than `thresholds.min_requests` canary requests say nothing: inconclusive, never failed.
    """
    min_requests = thresholds.min_requests
    c_rate, s_rate = canary.error_rate, stable.error_rate
    c_p95, s_p95 = canary.p95, stable.p95
    if canary.requests < min_requests:
        return IntervalAssessment(
            IntervalVerdict.INCONCLUSIVE,
            (f"only {canary.requests} canary requests (need {min_requests})",),
            c_rate,
            s_rate,
            c_p95,
            s_p95,
        )
    reasons: list[str] = []
    shared = False
    if c_rate > thresholds.max_error_rate:
        if (
            stable.requests >= min_requests
            and s_rate > thresholds.max_error_rate
            and c_rate <= s_rate * 1.1
        ):
            shared = True
            reasons.append(f"errors {c_rate:.1%} on both canary and stable ({s_rate:.1%})")
        else:
            reasons.append(f"canary error rate {c_rate:.1%} above {thresholds.max_error_rate:.1%}")
    limit = thresholds.max_p95_latency_ms
    if limit is not None and c_p95 is not None and c_p95 > limit:
        if s_p95 is not None and c_p95 <= s_p95 * thresholds.latency_tolerance:
            shared = True
            reasons.append(f"p95 {c_p95:.0f} ms on canary, {s_p95:.0f} ms on stable")
        else:
            reasons.append(f"canary p95 {c_p95:.0f} ms above {limit:.0f} ms")
    if reasons and not shared:
        verdict = IntervalVerdict.FAILED
    elif reasons:
        verdict = IntervalVerdict.INCONCLUSIVE
    else:
        verdict = IntervalVerdict.SUCCEEDED
        reasons.append(
            f"canary error rate {c_rate:.1%}"
            + (f", p95 {c_p95:.0f} ms" if c_p95 is not None else "")
        )
    return IntervalAssessment(verdict, tuple(reasons), c_rate, s_rate, c_p95, s_p95)


@dataclass(frozen=True)
class CanaryDecision:
    """The analysis so far and what to do."""

    outcome: CanaryOutcome
    reason: str
    failed: int = 0
    succeeded: int = 0
    inconclusive: int = 0
    history: tuple[IntervalVerdict, ...] = field(default=())


def assess_canary(
    assessments: Sequence[IntervalAssessment],
    thresholds: AnalysisThresholds,
    *,
    intervals_required: int = 1,
) -> CanaryDecision:
    """Roll back at `failure_limit` failed intervals; promote at `intervals_required` good ones."""
    verdicts = tuple(a.verdict for a in assessments)
    failed = verdicts.count(IntervalVerdict.FAILED)
    succeeded = verdicts.count(IntervalVerdict.SUCCEEDED)
    inconclusive = verdicts.count(IntervalVerdict.INCONCLUSIVE)

    def decide(outcome: CanaryOutcome, reason: str) -> CanaryDecision:
        return CanaryDecision(outcome, reason, failed, succeeded, inconclusive, verdicts)

    if failed >= thresholds.failure_limit:
        last = next(a for a in reversed(assessments) if a.verdict == IntervalVerdict.FAILED)
        limit = thresholds.failure_limit
        return decide(
            CanaryOutcome.ROLLBACK,
            f"{failed} failed interval(s) (limit {limit}): {last.reasons[0]}",
        )
    if succeeded >= intervals_required:
        return decide(CanaryOutcome.PROMOTE, f"{succeeded} good interval(s)")
    return decide(
        CanaryOutcome.CONTINUE, f"{succeeded}/{intervals_required} good interval(s) so far"
    )


# --- the canary plan: data, as Argo Rollouts' steps ---------------------------------------------


class StepKind(StrEnum):
    """What one canary step does."""

    WEIGHT = "setWeight"
    PAUSE = "pause"
    ANALYSIS = "analysis"


@dataclass(frozen=True)
class CanaryStep:
    """One step of a canary plan: set a weight, pause (for `seconds`, or until a person says),
    or analyse `intervals` intervals at the current weight."""

    kind: StepKind
    weight: int = 0
    seconds: float | None = None
    intervals: int = 0

    def describe(self) -> str:
        """The step as a person reads it."""
        if self.kind == StepKind.WEIGHT:
            return f"set weight {self.weight}%"
        if self.kind == StepKind.PAUSE:
            return "pause until promoted" if self.seconds is None else f"pause {self.seconds:g} s"
        return f"analyse {self.intervals} interval(s)"


def canary_plan(strategy: CanaryStrategy) -> tuple[CanaryStep, ...]:
    """The strategy's steps as data. Plain weights (`[10, 50, 100]`) become set-weight then an
    analysis of `bakeSeconds` worth of intervals; a weight of 100 ends the plan (promotion)."""
    bake = max(1, math.ceil(strategy.bake_seconds / strategy.analysis.interval_seconds))
    plan: list[CanaryStep] = []
    for step in strategy.steps:
        if isinstance(step, int):
            if step >= 100:
                break
            plan.append(CanaryStep(StepKind.WEIGHT, weight=step))
            plan.append(CanaryStep(StepKind.ANALYSIS, intervals=bake))
        elif isinstance(step, SetWeightStep):
            if step.set_weight >= 100:
                break
            plan.append(CanaryStep(StepKind.WEIGHT, weight=step.set_weight))
        elif isinstance(step, PauseStep):
            plan.append(CanaryStep(StepKind.PAUSE, seconds=step.pause.duration))
        elif isinstance(step, AnalysisStep):
            plan.append(CanaryStep(StepKind.ANALYSIS, intervals=step.analysis.intervals))
    return tuple(plan)


def canary_seconds(strategy: CanaryStrategy) -> float | None:
    """How long one canary runs when it is promoted: its analyses' intervals and its timed
    pauses (a failing analysis ends it sooner). None when a pause waits for a person."""
    total = 0.0
    for step in canary_plan(strategy):
        if step.kind == StepKind.ANALYSIS:
            total += step.intervals * strategy.analysis.interval_seconds
        elif step.kind == StepKind.PAUSE:
            if step.seconds is None:
                return None
            total += step.seconds
    return total


def assess_analysis_step(
    history: Sequence[IntervalAssessment],
    in_step: int,
    planned: int,
    thresholds: AnalysisThresholds,
) -> CanaryDecision:
    """After an interval of an analysis step: go on, pass the step, roll back or ask a person.

    `history` holds every interval of the canary so far, the last `in_step` of them this step's.
    Failures count over the whole canary (`failureLimit`); a step passes after its `planned`
    intervals with at least one good one; a step without a good interval bakes longer, up to
    `inconclusiveLimit` extra intervals, then does what `onInconclusive` says.
    """
    overall = assess_canary(history, thresholds, intervals_required=10**9)
    if overall.outcome == CanaryOutcome.ROLLBACK:
        return overall
    step = [a.verdict for a in history[len(history) - in_step :]] if in_step else []

    def decide(outcome: CanaryOutcome, reason: str) -> CanaryDecision:
        return CanaryDecision(
            outcome, reason, overall.failed, overall.succeeded, overall.inconclusive,
            overall.history,
        )  # fmt: skip

    if in_step < planned:
        return decide(CanaryOutcome.CONTINUE, f"interval {in_step}/{planned}")
    if IntervalVerdict.SUCCEEDED in step:
        good = step.count(IntervalVerdict.SUCCEEDED)
        return decide(CanaryOutcome.PROMOTE, f"{good}/{in_step} good interval(s) at this step")
    if in_step < planned + thresholds.inconclusive_limit:
        return decide(
            CanaryOutcome.CONTINUE,
            f"no good interval yet: baking longer ({in_step - planned + 1}"
            f"/{thresholds.inconclusive_limit} extra)",
        )
    action = {
        "rollback": CanaryOutcome.ROLLBACK,
        "pause": CanaryOutcome.PAUSE,
        "promote": CanaryOutcome.PROMOTE,
    }[thresholds.on_inconclusive]
    return decide(
        action,
        f"inconclusive: no good interval in {in_step} (too little traffic to judge);"
        f" onInconclusive: {thresholds.on_inconclusive}",
    )
