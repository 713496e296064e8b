"""`shipline demo`: the guided end-to-end run of the project's ladder on this machine (what it
runs is the engine's, `shipline.engine.demo`; here it is shown)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from shipline.cli.context import JsonFlag, State, state_of


def demo(
    ctx: typer.Context,
    stop: Annotated[
        bool, typer.Option("--stop", help="Stop the demo's services and its worker.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """The guided end-to-end run of the ladder on this machine (QuikApp's, with its example):
    every environment on the local target, release 1.0.0 deployed to the first rung and
    promoted through every rung above with its approvals (voted as the groups' members), checks
    and business hours (an emergency when closed), health verification and test gates; then a
    hotfix of a few services the same way, with canaries where the ladder has them.
    Example: shipline demo  (then: shipline demo --stop)"""
    from shipline.engine import demo as guide
    from shipline.engine.workspace import Workspace

    state = state_of(ctx)
    ws = state.workspace()
    guide.check_demo(ws.config)
    path, differs = guide.write_demo(ws)
    demo_ws = Workspace.open(path, guide.demo_environ(path), masker=state.output.masker)
    if stop:
        _stop(state, demo_ws, as_json=as_json)
        return
    say = _sayer(state, as_json)
    config = demo_ws.config
    say(f"{config.project}'s ladder on this machine, {' -> '.join(config.ladder)}"
        f" ({len(config.services)} services): {path}")  # fmt: skip
    for line in differs:
        say(line)
    done: list[dict[str, Any]] = []
    try:
        _start(demo_ws, say)
        from shipline.engine.assembly import run_service

        code = _run_plan(state, demo_ws, run_service(demo_ws), say, done, as_json=as_json)
    except KeyboardInterrupt:  # typer would end it silently (exit 130)
        state.output.error(
            "interrupted: what the demo queued goes on in its worker (see it with"
            f" SHIPLINE_CONFIG={path} shipline runs list); stop everything with:"
            " shipline demo --stop"
        )
        raise typer.Exit(130) from None
    from shipline.engine.status import service_status

    rows = service_status(demo_ws, None)
    if as_json:
        state.output.json({"config": str(path), "differs": differs, "runs": done,
                           "status": rows})  # fmt: skip
    else:
        from shipline.cli.actions import ladder_table

        say("")
        ladder_table(state, rows)
        _next_steps(state, demo_ws, done)
    if code:
        raise typer.Exit(code)


def _start(demo_ws: Any, say: Say) -> None:
    """The demo's secrets (random values where none are set yet) and its worker (started when
    none runs)."""
    from shipline.engine import demo as guide
    from shipline.engine.secret_chores import generate_audited

    ladder = demo_ws.config.ladder
    made = sum(len(generate_audited(demo_ws, env, actor=guide.ACTOR)) for env in ladder)
    if made:
        say(f"secrets: {made} random value(s) in the embedded encrypted store")
    if guide.worker_pid(demo_ws) is None:
        pid = guide.start_worker(demo_ws)
        say(f"worker {pid} started (its log: {demo_ws.state_dir / 'worker.log'})")


def _run_plan(
    state: State, demo_ws: Any, runs: Any, say: Say, done: list[dict[str, Any]], *,
    as_json: bool,
) -> int:  # fmt: skip
    """Start and follow each run of the demo's plan until one fails (each run added to `done`
    once it ended); the exit code."""
    from shipline.engine import demo as guide

    config = demo_ws.config
    for step in guide.demo_plan(config, datetime.now(UTC)):
        say("")
        say(f"== {step.title}")
        if step.emergency:
            say(f"   {', '.join(step.emergency)}: outside business hours now, so an emergency"
                " (--emergency), with its emergency approvals too")  # fmt: skip
        record = guide.start_step(demo_ws, runs, step)
        code, data, votes = _follow(state, runs, config, record.id, say, as_json=as_json)
        done.append({"step": step.title, "run": record.id, "phase": data["phase"],
                     "reason": data.get("reason"), "report": data.get("report"),
                     "approvals": votes})  # fmt: skip
        if code:
            return code
    return 0


Say = Callable[[str], None]


def _sayer(state: State, as_json: bool) -> Say:
    """Where the guide's lines go: nowhere with --json (one document at the end), the console
    in a terminal (above a live view), else plain lines."""
    if as_json:
        return lambda _line: None
    if state.output.console.is_terminal:
        from rich.text import Text

        return lambda line: state.output.console.print(Text(line))
    return state.output.line


def _follow(
    state: State, runs: Any, config: Any, run_id: int, say: Say, *, as_json: bool
) -> tuple[int, dict[str, Any], list[dict[str, str]]]:
    """Follow a run of the demo to its end, approving each stage that waits for approval as
    its groups' members: (exit code, the run's details, the votes cast)."""
    from shipline.cli.door import EXIT
    from shipline.cli.follow import follow, follow_plain
    from shipline.engine.demo import approve_waiting
    from shipline.engine.runs import run_details

    votes: list[dict[str, str]] = []
    handled: set[str] = set()

    def details(service: Any, run: int) -> dict[str, Any]:
        for vote in approve_waiting(service, config, run, handled):
            shown = config.approver_groups[vote.group].display_name or vote.group
            say(f"   {vote.stage}: approved by {vote.user} ({shown})")
            votes.append({"stage": vote.stage, "user": vote.user, "group": vote.group})
        return run_details(service, run)

    with runs.pause_for(run_id) as wait:
        if as_json:
            data = details(runs, run_id)
            while data["phase"] not in EXIT:
                wait(0.25)
                data = details(runs, run_id)
            return EXIT[data["phase"]], data, votes
        if state.output.console.is_terminal:
            code = follow(runs, run_id, state.output.console, details, pause=wait)
        else:
            code = follow_plain(runs, run_id, state.output.line, details, pause=wait)
    return code, run_details(runs, run_id), votes


def _next_steps(state: State, ws: Any, done: list[dict[str, Any]]) -> None:
    from shipline.engine.demo import try_next

    last = done[-1] if done else None
    lines = [""]
    if last and last.get("report"):
        lines.append(f"the last run's report: {last['report']}")
    lines += [
        "Look around and try it (the demo's own state, beside the project's):",
        f"  export SHIPLINE_CONFIG={ws.config_path}",
        "  shipline status                 # every service on every rung",
        "  shipline runs list              # the demo's runs; runs show N for one",
        "  shipline audit list             # who approved what, and when",
        *(f"  {line}" for line in try_next(ws.config)),
        "  shipline users add me --admin < password.txt && shipline server"
        "   # the dashboard, :8600",
        "Stop it: shipline demo --stop",
    ]
    for line in lines:
        state.output.line(line)


def _stop(state: State, ws: Any, *, as_json: bool) -> None:
    """Take every rung's services down, then stop the demo's worker."""
    from shipline.engine import demo as guide

    stopped: list[str] = []
    pid = guide.worker_pid(ws)
    if pid is not None:
        stopped = guide.stop_demo(ws)
    if as_json:
        state.output.json({"stopped": stopped, "worker": pid})
        return
    if pid is None:
        state.output.line("the demo is not running")
        return
    for name in stopped:
        state.output.line(f"{name}: services stopped")
    state.output.line(f"worker {pid} stopped")
