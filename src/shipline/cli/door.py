"""`deploy`, `promote`, votes and cancellations handed to a worker of the state folder through
its front door (`shipline.frontdoor`): the worker has the project, the store and the engine
loaded, so the command pays only for its own start before the run is queued or the vote
counted; a command that waits for the run's result (--json, --quiet) asks the worker for it
too (one following it live loads the rest while the run goes on). Without a worker there (or
one of another project), the command does the work itself, as it always could. What these
commands print is here too, free of the command-line framework: the quick path
(`cli/quick.py`) prints with the same functions."""

from __future__ import annotations

import os

from shipline.errors import ShiplineError

TYPE_CHECKING = False  # typing is not imported at run time (the quick path loads this)
if TYPE_CHECKING:
    from typing import Any


class _Refused(ShiplineError):
    """The worker's refusal, as the command would have refused: its lines and exit code."""

    def __init__(self, lines: list[str], code: int) -> None:
        super().__init__(lines[0] if lines else "refused")
        self._lines = lines or ["refused"]
        self.exit_code = code

    def lines(self) -> list[str]:
        return self._lines


def deploy_at_door(state: Any, args: dict[str, Any], *, as_json: bool) -> None:
    """Hand a detached deploy to a worker; on its answer print it and exit (3, or the
    refusal's code). Returns only when no worker of this project answered: the caller submits
    itself."""
    from shipline.cli.runs import detached

    answer = submit_at_door(state, "deploy", args)
    if answer is not None:
        run = int(answer["run"])
        detached(state, run, str(answer["phase"]), as_json=as_json, queued=f"run {run} queued")


# a waited-for run's exit code by how it ended
EXIT = {"succeeded": 0, "failed": 1, "errored": 1, "cancelled": 1}


def print_result(
    output: Any, run_id: int, data: dict[str, Any], extra: dict[str, Any], *, as_json: bool
) -> int:
    """A waited-for run's end as --json (its document, with `extra`) or --quiet (one line)
    print it; the command's exit code."""
    if as_json:
        output.json({**data, **extra})
    else:
        reason = f" ({data['reason']})" if data.get("reason") else ""
        output.line(f"run {run_id} {data['pipeline']}: {data['phase']}{reason}")
    return EXIT[data["phase"]]


def say_interrupted(output: Any, run_id: int) -> None:
    """Ctrl-C while following: the run is not stopped; say how to follow or cancel it."""
    output.error(
        f"stopped following; run {run_id} goes on. Follow it: shipline runs logs {run_id}"
        f" --follow · cancel it: shipline runs cancel {run_id}"
    )


def say_detached(output: Any, run_id: int, phase: str, *, as_json: bool, queued: str) -> None:
    """What a command that started a run and left it to go on prints: how to follow it."""
    if as_json:
        output.json({"run": run_id, "phase": phase})
    else:
        output.line(
            f"{queued}; follow it with: shipline runs logs {run_id} --follow"
            f" (or: shipline runs show {run_id})"
        )


def say_voted(
    output: Any, run_id: int, stage: str, who: str, waiting: list[str], *, approve: bool
) -> None:
    """What a vote's command prints: the stage voted on, by whom, and who is still needed."""
    still = f"; still needed: {', '.join(waiting)}" if waiting else ""
    word = "approved" if approve else "rejected"
    output.error(f"run {run_id} stage '{stage}': {word} by {who}{still}")


def say_cancel_requested(output: Any, run_id: int) -> None:
    """What `runs cancel` prints once the cancellation is recorded."""
    output.error(f"run {run_id}: cancellation requested")


def submit_at_door(
    state: Any, op: str, args: dict[str, Any], actor: str | None = None
) -> dict[str, Any] | None:
    """Hand a `deploy`, `promote`, `vote`, `cancel` or `show` (`op`) to a worker of the state
    folder: its answer (for a submission the run it queued, `run` and `phase`); raises its
    refusal as the command would; None when no worker of this project answered (the caller
    does the work itself). `actor`: who acts (default: the acting user)."""
    from shipline import frontdoor
    from shipline.cli.remote import acting_user
    from shipline.engine.locations import database_url_of, state_dir_of

    config = state.config_path().resolve()
    request = {
        "op": op,
        "config": str(config),
        "database": database_url_of(config, os.environ),
        "actor": actor or acting_user(),
        "args": args,
    }
    try:
        answer = frontdoor.knock(state_dir_of(config, os.environ), request)
    except frontdoor.DoorError as exc:
        if op == "show":  # nothing was asked of the engine: the caller reads the store
            return None
        hint = "  hint: see `shipline runs list` before submitting again"
        raise _Refused([f"shipline {op}: {exc}", hint], 1) from exc
    if answer is None or "fallback" in answer:
        return None
    if "error" in answer:
        raise _Refused([str(line) for line in answer["error"]], int(answer.get("code", 1)))
    return answer


def watch_at_door(state: Any, output: Any, run_id: int, *, as_json: bool) -> int | None:
    """Wait for run `run_id`'s end and print it as `watch` does with --json or --quiet, asking
    a worker through the front door: the command loads neither the project nor the store, and
    leaves the machine's cores to the run. Woken by the run's bell when it moves. The exit
    code (130: interrupted, the run goes on); None when no worker of this project answers:
    the caller watches from the store."""
    from shipline.doorbell import Follower
    from shipline.engine.locations import state_dir_of

    folder = state_dir_of(state.config_path().resolve(), os.environ)
    try:
        with Follower(folder, run_id, ends_only=True) as bell:
            while True:
                seen = submit_at_door(
                    state, "show", {"run": run_id, "brief": True, "detailsOnceEnded": True}
                )
                if seen is None:
                    return None
                if seen.get("phase") in EXIT:
                    break
                bell.wait(1.0)  # the worker rings when the run ends: a look a second besides
    except KeyboardInterrupt:
        say_interrupted(output, run_id)
        return 130
    if "details" not in seen:  # a worker of an older shipline: asked for them
        seen = submit_at_door(state, "show", {"run": run_id})
        if seen is None:
            return None
    return print_result(output, run_id, seen["details"], {}, as_json=as_json)
