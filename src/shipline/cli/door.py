"""`deploy`, `promote`, votes and cancellations handed to a worker of the state folder through
its front door (`shipline.frontdoor`): the worker has the project, the store and the engine
loaded, so the command pays only for its own start before the run is queued or the vote
counted; a command that waits for the run's result (--json, --quiet) asks the worker for it
too (one following it live loads the rest while the run goes on). Without a worker there (or
one of another project), the command does the work itself, as it always could."""

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


def watch_at_door(state: Any, run_id: int, *, as_json: bool) -> bool:
    """Wait for run `run_id`'s end and print it as `watch` does with --json or --quiet, asking
    a worker through the front door: the command loads neither the project nor the store, and
    leaves the machine's cores to the run. Woken by the run's bell when it moves. False when
    no worker of this project answers: the caller watches from the store."""
    import typer

    from shipline.cli.follow import EXIT
    from shipline.cli.runs import _interrupted, print_result
    from shipline.doorbell import Follower
    from shipline.engine.locations import state_dir_of

    folder = state_dir_of(state.config_path().resolve(), os.environ)
    try:
        with Follower(folder, run_id) as bell:
            while True:
                seen = submit_at_door(state, "show", {"run": run_id, "brief": True})
                if seen is None:
                    return False
                if seen.get("phase") in EXIT:
                    break
                bell.wait(1.0)  # the worker rings when the run moves: a look a second besides
    except KeyboardInterrupt:
        _interrupted(state.output, run_id)
    shown = submit_at_door(state, "show", {"run": run_id})
    if shown is None:
        return False
    code = print_result(state, run_id, shown["details"], {}, as_json=as_json)
    if code:
        raise typer.Exit(code)
    return True
