"""The canary controller: the plan's steps as durable engine steps, the Argo Rollouts way.

The plan is data (`domain.canary.canary_plan`); each weight change and each analysis interval is
its own DBOS step and each bake or pause a durable wait, so a worker killed mid-canary resumes at
the step it was on. The target only starts, weights, promotes or removes the canary
(`CanaryRouter`); the verdicts are the domain's pure functions. Cancellation and
`shipline canary abort` restore stable at once; `pause: {}` waits for `shipline canary promote`.

Step outputs never hold the spec: it carries secret values, so each step derives it again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from dbos import DBOS

from shipline.domain.canary import (
    CanaryOutcome,
    CanaryStep,
    IntervalAssessment,
    IntervalVerdict,
    StepKind,
    assess_analysis_step,
    assess_interval,
    canary_plan,
    rolling_instead,
)
from shipline.domain.models import CanaryStrategy
from shipline.domain.pipeline import Phase, StepSpec
from shipline.domain.ports import CanaryRouter
from shipline.engine.actions import NOTE, idempotency_key
from shipline.engine.deploy_actions import own_change, remember_revision, spec_of, target_of
from shipline.engine.failpoints import failpoint
from shipline.engine.runtime import current
from shipline.engine.wiring import metric_source
from shipline.errors import NotFoundError, RuleError, ShiplineError

Receive = Callable[[datetime | None], dict[str, Any] | None]
Now = Callable[[], datetime]


class CanaryCancelled(Exception):
    """The run was cancelled while the canary ran (raised by the workflow's receive)."""


def _logger(run_id: int, stage: str, step: str) -> Callable[[str], None]:
    rt = current()

    def write(line: str) -> None:
        rt.store.add_log(run_id, stage, step, rt.masker.mask(line))

    return write


def _router(params: dict[str, Any]) -> CanaryRouter | None:
    target = target_of(params)
    return target if isinstance(target, CanaryRouter) else None


@DBOS.step(name="shipline.canary.begin")
def _begin(
    run_id: int, stage: str, position: int, name: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Start the step; a first deploy, a redeploy of stable or a target that routes no traffic
    gets a plain rollout instead ('done'), anything else a canary ('canary')."""
    rt = current()
    log = _logger(run_id, stage, name)
    rt.store.record(
        run_id, "step.running", "canary", stage=stage, step=name,
        step_values={"position": position, "phase": "running", "attempts": 1,
                     "started_at": rt.clock()},
    )  # fmt: skip
    try:
        started = _start(params, log, idempotency_key(run_id, stage, name))
        if started["mode"] == "done":
            remember_revision(run_id, params)
        return started
    except RuleError as exc:
        return {"mode": "ended", "phase": Phase.FAILED.value, "error": exc.message}
    except ShiplineError as exc:
        return {"mode": "ended", "phase": Phase.ERRORED.value, "error": exc.message}


def _start(params: dict[str, Any], log: Callable[[str], None], change: str) -> dict[str, Any]:
    target = target_of(params)
    service, version = str(params["service"]), str(params["version"])
    try:
        live = target.observe(str(params["environment"]), service)
    except NotFoundError:
        live = None
    before = live.revision if live else 0
    outputs = {service: version, f"{service}.previousRevision": before}
    spec = spec_of(params)
    stable = live.version if live is not None else None
    why = rolling_instead(
        stable, version, routes=_router(params) is not None,
        target=f"target type '{params['target']}'",
    )  # fmt: skip
    if why is not None or stable is None:
        plan = target.plan(spec)
        replaced = own_change(target, params, change, log) if plan.in_sync else None
        if replaced is not None:  # this step's own rollout, made before its worker stopped
            return {"mode": "done", "outputs": {**outputs, f"{service}.previousRevision": replaced}}
        if plan.in_sync and not params.get("force"):
            log(f"{service} {version}: in sync, nothing to do")
            return {"mode": "done", "outputs": {**outputs, f"{service}.inSync": True,
                                                NOTE: "in sync, nothing to do"}}  # fmt: skip
        log(f"{service} {version}: rolling update ({why}: no canary)")
        target.apply(spec, cause="deploy", log=log, change=change)
        failpoint("deploy-applied", change)
        return {"mode": "done", "outputs": {**outputs, NOTE: f"rolling update ({why}: no canary)"}}
    log(f"{service}: canary {version} against stable {stable}")
    return {"mode": "canary", "outputs": outputs, "stable": stable}


@DBOS.step(name="shipline.canary.progress")
def _progress(run_id: int, stage: str, name: str, status: dict[str, Any], message: str) -> None:
    """Record where the canary is (step index, weight, last analysis) for the live view."""
    current().store.record(
        run_id, "canary.progress", message, stage=stage, step=name,
        step_values={"outputs": {"canary": status}},
    )  # fmt: skip
    _logger(run_id, stage, name)(message)


@DBOS.step(name="shipline.canary.weight")
def _weight(run_id: int, stage: str, name: str, params: dict[str, Any], weight: int) -> str | None:
    """Make sure the canary runs and takes `weight` %; why not, when it cannot."""
    strategy = CanaryStrategy.model_validate(params["strategy"])
    router = _router(params)
    assert router is not None
    spec = spec_of(params)
    if spec.router and spec.router[0] not in getattr(router, "routers", frozenset()):
        return (
            f"target type '{params['target']}' cannot split traffic with {spec.router[0]}"
            " (trafficRouting): remove it, or deploy through a target that can"
        )
    try:
        router.set_canary(
            spec, weight, probe_rps=strategy.metrics.probe_rps,
            log=_logger(run_id, stage, name),
        )  # fmt: skip
        _source(params, router).collect()  # the next interval starts now
    except ShiplineError as exc:
        return exc.message
    return None


def _source(params: dict[str, Any], router: CanaryRouter) -> Any:
    strategy = CanaryStrategy.model_validate(params["strategy"])
    environment, service = str(params["environment"]), str(params["service"])
    return metric_source(
        strategy.metrics, router.metrics(environment, service), environment, service
    )


@DBOS.step(name="shipline.canary.analyse")
def _analyse(
    run_id: int, stage: str, name: str, params: dict[str, Any], weight: int, stable: str
) -> dict[str, Any]:
    """One analysis interval: the canary's sample against stable's, judged by the thresholds."""
    strategy = CanaryStrategy.model_validate(params["strategy"])
    router = _router(params)
    assert router is not None
    log = _logger(run_id, stage, name)
    spec = spec_of(params)
    try:
        if router.set_canary(spec, weight, probe_rps=strategy.metrics.probe_rps, log=log):
            # The canary was gone (a restarted worker): this interval saw no traffic of it.
            _source(params, router).collect()
            return {"verdict": IntervalVerdict.INCONCLUSIVE.value,
                    "reasons": ["canary re-created after a restart; judging the next interval"],
                    "canary": 0.0, "stable": 0.0}  # fmt: skip
        source = _source(params, router)
        source.collect()
        seconds = strategy.analysis.interval_seconds
        found = assess_interval(
            source.sample(spec.version, seconds), source.sample(stable, seconds),
            strategy.analysis,
        )  # fmt: skip
    except ShiplineError as exc:
        return {"error": exc.message}
    return {
        "verdict": found.verdict.value,
        "reasons": list(found.reasons),
        "canary": found.canary_error_rate,
        "stable": found.stable_error_rate,
        "canaryP95": found.canary_p95_ms,
        "stableP95": found.stable_p95_ms,
    }


@DBOS.step(name="shipline.canary.end")
def _end(
    run_id: int, stage: str, position: int, name: str, params: dict[str, Any],
    promote: bool, phase: str, reason: str, outputs: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Promote or remove the canary, and record the step's end."""
    rt = current()
    log = _logger(run_id, stage, name)
    router = _router(params)
    assert router is not None
    error: str | None = None
    try:
        router.end_canary(spec_of(params), promote=promote, log=log)
        if promote:
            remember_revision(run_id, params)
    except RuleError as exc:
        phase, error = Phase.FAILED.value, exc.message
    except ShiplineError as exc:
        phase, error = Phase.ERRORED.value, exc.message
    if phase != Phase.SUCCEEDED and error is None:
        error = reason
    error = rt.masker.mask(error) if error else None
    rt.store.record(
        run_id, f"step.{phase}", error or reason, stage=stage, step=name,
        step_values={"position": position, "phase": phase, "error": error,
                     "finished_at": rt.clock(), "outputs": outputs},
    )  # fmt: skip
    return {"phase": phase, "outputs": outputs if phase == Phase.SUCCEEDED else {}, "error": error}


def _assessment(data: dict[str, Any]) -> IntervalAssessment:
    return IntervalAssessment(
        IntervalVerdict(data["verdict"]), tuple(data["reasons"]),
        float(data["canary"]), float(data["stable"]),
        data.get("canaryP95"), data.get("stableP95"),
    )  # fmt: skip


class _Control:
    """A person's word on a running canary: promote (skip the current pause or analysis) or
    abort (roll back now)."""

    PROMOTE = "promote"
    ABORT = "abort"


def _wait(receive: Receive, until: datetime | None, name: str) -> str | None:
    """Wait until `until` (None: until a person says); 'promote' or 'abort' when one did, for
    this canary (`name`, its step) or for every running one (a message naming none)."""
    while True:
        message = receive(until)
        if message is None:
            if until is None:
                continue  # a quiet chunk of an endless wait
            return None
        if (
            message.get("type") == "canary"
            and message.get("action") in (_Control.PROMOTE, _Control.ABORT)
            and message.get("step") in (None, name)
        ):
            return str(message["action"])


def drive_canary(
    run_id: int,
    stage: str,
    position: int,
    step: StepSpec,
    receive: Receive,
    now: Now,
) -> dict[str, Any]:
    """Run one service's canary to its end (inside the run's workflow); the result is shaped as
    an executed step's: phase, outputs, error."""
    params = dict(step.params)
    name = step.name
    begun = _begin(run_id, stage, position, name, params)
    if begun["mode"] == "ended":
        return _end_plain(run_id, stage, position, name, {}, begun["phase"], begun["error"])
    outputs: dict[str, Any] = begun["outputs"]
    if begun["mode"] == "done":
        return _end_plain(run_id, stage, position, name, outputs)
    stable = str(begun["stable"])
    strategy = CanaryStrategy.model_validate(params["strategy"])
    plan = canary_plan(strategy)
    history: list[IntervalAssessment] = []
    weight = 0

    def progress(index: int, message: str, last: str | None = None) -> None:
        status = {
            "step": index + 1, "of": len(plan), "weight": weight, "stable": stable,
            "version": str(params["version"]), "lastAnalysis": last,
        }  # fmt: skip
        _progress(run_id, stage, name, status, message)

    def finish(promote: bool, phase: Phase, reason: str) -> dict[str, Any]:
        outputs[f"{name}.analyses"] = [  # the samples behind the verdict, for the run's report
            {"verdict": a.verdict.value, "canary": a.canary_error_rate,
             "stable": a.stable_error_rate, "canaryP95": a.canary_p95_ms}
            for a in history
        ]  # fmt: skip
        if promote:  # what the step's line says once it ended (a failure says why instead)
            counts = Counter(a.verdict.value for a in history)
            said = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
            outputs[NOTE] = f"canary {params['version']} promoted" + (
                f" after {len(history)} analyses ({said})" if history else ""
            )
        return _end(run_id, stage, position, name, params, promote, phase.value, reason, outputs)

    try:
        for index, planned in enumerate(plan):
            said = f"step {index + 1}/{len(plan)}: {planned.describe()}"
            if planned.kind == StepKind.PAUSE and planned.seconds is None:
                said += f" (shipline canary promote|abort {run_id} --service {name})"
            progress(index, said)
            if planned.kind == StepKind.WEIGHT:
                weight = planned.weight
                problem = _weight(run_id, stage, name, params, weight)
                if problem is not None:
                    return finish(False, Phase.FAILED, f"canary not started: {problem}")
                continue
            if planned.kind == StepKind.PAUSE:
                word = _pause(planned, receive, now, name)
                if word == _Control.ABORT:
                    return finish(False, Phase.FAILED, "canary aborted by a person")
                continue
            verdict = _analysis(
                run_id, stage, name, params, planned, strategy, history, weight, stable,
                receive, now, partial(progress, index),
            )  # fmt: skip
            if verdict is not None:
                return finish(False, Phase.FAILED, verdict)
    except CanaryCancelled:
        finish(False, Phase.CANCELLED, "run cancelled during the canary; stable restored")
        raise
    progress(len(plan) - 1, f"{params['service']}: canary {params['version']} promoted")
    return finish(True, Phase.SUCCEEDED, "canary promoted")


def _pause(planned: CanaryStep, receive: Receive, now: Now, name: str) -> str | None:
    until = None if planned.seconds is None else now() + timedelta(seconds=planned.seconds)
    return _wait(receive, until, name)


def _analysis(
    run_id: int, stage: str, name: str, params: dict[str, Any], planned: CanaryStep,
    strategy: CanaryStrategy, history: list[IntervalAssessment], weight: int, stable: str,
    receive: Receive, now: Now, progress: Callable[[str, str], None],
) -> str | None:  # fmt: skip
    """Analyse intervals until the step passes; the rollback reason when it must not go on."""
    in_step = 0
    interval = timedelta(seconds=strategy.analysis.interval_seconds)
    while True:
        word = _wait(receive, now() + interval, name)
        if word == _Control.ABORT:
            return "canary aborted by a person"
        if word == _Control.PROMOTE:
            return None  # a person promoted past this analysis
        sampled = _analyse(run_id, stage, name, params, weight, stable)
        if "error" in sampled:
            return f"canary {params['version']} rolled back: analysis broke: {sampled['error']}"
        found = _assessment(sampled)
        history.append(found)
        in_step += 1
        decision = assess_analysis_step(history, in_step, planned.intervals, strategy.analysis)
        progress(
            f"analysis {found.verdict.value}: {'; '.join(found.reasons)} -> {decision.reason}",
            found.verdict.value,
        )
        if decision.outcome == CanaryOutcome.ROLLBACK:
            return f"canary {params['service']} {params['version']} rolled back: {decision.reason}"
        if decision.outcome == CanaryOutcome.PROMOTE:
            return None
        if decision.outcome == CanaryOutcome.PAUSE:
            progress(f"{decision.reason}: waiting for `shipline canary promote|abort {run_id}"
                     f" --service {name}`", found.verdict.value)  # fmt: skip
            word = _wait(receive, None, name)
            return "canary aborted by a person" if word == _Control.ABORT else None


@DBOS.step(name="shipline.canary.done")
def _end_plain(
    run_id: int, stage: str, position: int, name: str, outputs: dict[str, Any],
    phase: str = Phase.SUCCEEDED.value, error: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Record the end of a step that needed no canary (or could not start)."""
    rt = current()
    error = rt.masker.mask(error) if error else None
    rt.store.record(
        run_id, f"step.{phase}", error or "done", stage=stage, step=name,
        step_values={"position": position, "phase": phase, "error": error,
                     "finished_at": rt.clock(), "outputs": outputs},
    )  # fmt: skip
    return {"phase": phase, "outputs": outputs, "error": error}
