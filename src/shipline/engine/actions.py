"""Step actions: what a step does. Built-ins here; plugins by entry point `shipline.actions`.

An action is `fn(ctx: StepContext, params: dict) -> dict` (its outputs). It raises a RuleError
when a rule says no (the step fails), any other exception when something breaks (it errors and
may be retried). Long actions call `ctx.check_cancelled()` now and then.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from shipline.errors import CheckFailed, ShiplineError, TechnicalError, UserError
from shipline.process import classify_exit, stream


class StepCancelled(ShiplineError):
    """The run was cancelled while this step ran."""

    terminal = True


class StepTimedOut(TechnicalError):
    """The step ran past its timeout."""

    terminal = True


@dataclass(frozen=True)
class Behind:
    """The step before this one, still making its effect when this one began (a step of an
    action in `BEGIN_EARLY`, in a stage that runs its steps one after another)."""

    change: str  # its idempotency key: a target that orders rollouts queues this one behind it
    # waits until it made its effect, or ended without: whether it made it (this step may act)
    wait: Callable[[], bool]


def idempotency_key(run_id: int, stage: str, step: str) -> str:
    """A step's key for its effects: the same each time the step runs (after a crash too)."""
    return f"run-{run_id}/{stage}/{step}"


@dataclass
class StepContext:
    """What an action may use: who it runs for, inputs from earlier stages, a log, cancel checks."""

    run_id: int
    stage: str
    step: str
    attempt: int
    inputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    log: Callable[[str], None] = lambda line: None
    cancelled: Callable[[], bool] = lambda: False
    deadline: float | None = None
    # Said once the step's effect is made and succeeded (`hand_on`).
    handed_on: Callable[[], None] = lambda: None
    # Said, with the step's idempotency key, when it is about to wait on its effect (`acting`).
    began_acting: Callable[[str], None] = lambda change: None
    # The step before, when it was still making its effect as this one began (`BEGIN_EARLY`):
    # this step's effect must follow it. None: the step before ended or handed on (or none).
    behind: Behind | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable across replays of this step: use it to make side effects happen once."""
        return idempotency_key(self.run_id, self.stage, self.step)

    def acting(self) -> None:
        """Say that the step is about to make its effect and wait on it (a rollout), after the
        effect of the step it is `behind`, if any: in a stage that runs its steps one after
        another, what does not hold up this effect is done now, while it waits (the step
        before writing itself down; the next step begins, when its action is in
        `BEGIN_EARLY`)."""
        self.began_acting(self.idempotency_key)

    def hand_on(self) -> None:
        """Say that the step's effect is made and succeeded, and what is left is writing it down:
        in a stage that runs its steps one after another, the next step begins now instead of
        once this one is recorded (a rolling deploy's next service starts while this one's
        revision is written down), and this call returns once the next step acts (`acting`),
        handed on, ended, or will not begin. Call it at most once, after the last change the
        step makes; a step that fails after it still fails its stage, but the next step has
        begun."""
        self.handed_on()

    def check_cancelled(self) -> None:
        """Raise when the run was cancelled or the step's time is up."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise StepTimedOut(f"step '{self.step}' timed out")
        if self.cancelled():
            raise StepCancelled(f"step '{self.step}' stopped: the run was cancelled")


Action = Callable[[StepContext, dict[str, Any]], dict[str, Any]]

# An action's outputs may carry a one-line remark under this key ("not run: 'zap-baseline.py'
# is not installed here"): shown with the step (`runs show`, its --json, the run page), kept
# with the step's outputs, not passed on to later stages.
NOTE = "note"


def passed_on(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """What of a step's outputs its stage passes on to later stages (all but its note)."""
    return {key: value for key, value in outputs.items() if key != NOTE}


def _noop(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    return dict(params.get("outputs", {}))


def _fail(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    if params.get("technical"):
        raise TechnicalError(str(params.get("message", "failed on purpose")))
    raise CheckFailed(str(params.get("message", "failed on purpose")))


def _flaky(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Errors on the first `failures` attempts, then succeeds (for retry policies)."""
    if ctx.attempt <= int(params.get("failures", 1)):
        raise TechnicalError(f"attempt {ctx.attempt} broke")
    return {"attempts": ctx.attempt}


def _wait(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Busy for `seconds`, checking for cancellation and timeout."""
    end = time.monotonic() + float(params.get("seconds", 1))
    while time.monotonic() < end:
        ctx.check_cancelled()
        time.sleep(0.02)
    return {}


def _record(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Append this step's idempotency key to a file once, however often the step is replayed.

    Every attempt is also appended to `<file>.attempts`, so that re-executions stay visible.
    """
    path = Path(str(params["file"]))
    with open(f"{path}.attempts", "a", encoding="utf-8") as attempts:
        attempts.write(ctx.idempotency_key + "\n")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        seen = set(handle.read().splitlines())
        if ctx.idempotency_key not in seen:
            handle.write(ctx.idempotency_key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    ctx.log(f"recorded {ctx.idempotency_key}")
    delay = float(params.get("seconds", 0))
    if delay:
        time.sleep(delay)
    return {"recorded": ctx.idempotency_key}


def _script(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Run a command (argv list) and log its output; a non-zero exit fails the step."""
    argv = params.get("argv")
    if not isinstance(argv, list) or not argv:
        raise UserError("script step needs 'argv': a non-empty list")
    env = {
        **os.environ,
        "SHIPLINE_RUN_ID": str(ctx.run_id),
        "SHIPLINE_STAGE": ctx.stage,
        "SHIPLINE_STEP": ctx.step,
    }
    code, lines = stream([str(a) for a in argv], ctx.log, env=env)
    if code != 0:
        raise classify_exit(code, lines, "script failed")
    return {"exitCode": code}


BUILTIN: dict[str, Action] = {
    "noop": _noop,
    "fail": _fail,
    "flaky": _flaky,
    "wait": _wait,
    "record": _record,
    "script": _script,
}


# Actions whose steps a one-after-another stage begins as soon as the step before them acts
# (`StepContext.acting`: it waits on its effect), not once it made it: such a step reads what it
# needs meanwhile, and makes its own effect only after the one before's (`StepContext.behind`:
# queued behind it at a target that orders rollouts, else once it is made). When that one
# fails, the step does nothing and counts as skipped (`Withdrawn`).
BEGIN_EARLY: set[Action] = set()


def begins_early(name: str, extra: Mapping[str, Action] | None = None) -> bool:
    """Whether a step of action `name` begins while the step before it acts (`BEGIN_EARLY`)."""
    try:
        return find_action(name, extra) in BEGIN_EARLY
    except UserError:
        return False  # an unknown action: its step says so when it runs


def find_action(name: str, extra: Mapping[str, Action] | None = None) -> Action:
    """The action called `name`: registered extras, built-ins, then entry points."""
    if extra and name in extra:
        return extra[name]
    if name in BUILTIN:
        return BUILTIN[name]
    for ep in entry_points(group="shipline.actions"):
        if ep.name == name:
            loaded: Action = ep.load()
            return loaded
    raise UserError(f"unknown step action '{name}'", hint=f"built-in: {', '.join(sorted(BUILTIN))}")
