"""CLI commands about runs: worker, runs list|show|logs|cancel, approve, reject."""

import contextlib
import os
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shipline.cli.context import JsonFlag, state_of
from shipline.engine.reads import where
from shipline.errors import UserError

if TYPE_CHECKING:
    from shipline.domain.models import Config
    from shipline.engine.wiring import RunRecord

runs_app = typer.Typer(help="Runs: list, show, logs, cancel.", no_args_is_help=True)


def _service(ctx: typer.Context) -> Any:
    from shipline.engine.assembly import run_service

    return run_service(state_of(ctx).workspace())


def _actor(explicit: str | None = None) -> str:
    from shipline.engine.identity import current_user

    if explicit is None:
        from shipline.cli.remote import acting_user

        return acting_user()
    return current_user(explicit, os.environ)


def worker(
    ctx: typer.Context,
    worker_id: Annotated[
        str | None,
        typer.Option("--id", help="Stable executor id (default: SHIPLINE_WORKER_ID or local)."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Runs at once on this worker (default 32; waiting runs do not count)."),
    ] = None,
    stop_it: Annotated[
        bool, typer.Option("--stop", help="Stop the worker with this id on this machine.")
    ] = False,
    poll_seconds: Annotated[
        float,
        typer.Option(
            "--poll-seconds",
            min=0.01,
            max=60,
            help="How often to look for submitted and woken runs (a run starts, and a parked"
            " run acts on a vote, within this time; each look costs a database transaction).",
        ),
    ] = 0.5,
    adopt_after: Annotated[
        float,
        typer.Option(
            "--adopt-after",
            min=1,
            max=3600,
            help="Seconds without a heartbeat after which another worker takes this one for"
            " dead and finishes its runs (those on a local target wait for it).",
        ),
    ] = 30.0,
) -> None:
    """Execute runs until stopped; runs of this worker id left unfinished resume first.
    Several workers (each its own --id) share the runs of one PostgreSQL store; one silent for
    --adopt-after seconds has its runs finished by another.

    Services on the local target run as this worker's processes and stop with it.
    Example: shipline worker  (or: shipline worker --stop)
    """
    from shipline.engine import durable
    from shipline.engine.assembly import worker_queues, worker_runtime

    state = state_of(ctx)
    ws = state.workspace()
    name = worker_id or os.environ.get("SHIPLINE_WORKER_ID") or "local"
    pid_file = ws.state_dir / f"worker-{name}.pid"
    if stop_it:
        _stop_worker(pid_file, name, state)
        return
    runtime, system_url = worker_runtime(ws)
    durable.hold_worker_lock(ws.state_dir, name)  # a second worker with this id is refused here
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    _restore_targets(runtime, ws, state)
    durable.launch(
        runtime, system_url, executor_id=name, concurrency=concurrency,
        poll_seconds=poll_seconds, queues=worker_queues(ws), adopt_after=adopt_after,
        on_fenced=_fenced,
    )  # fmt: skip
    from shipline import frontdoor
    from shipline.engine.submit import FrontDesk

    desk = FrontDesk(ws)  # `deploy --detach` of this user, handed over by the command

    def front_door() -> None:
        desk.open()
        frontdoor.keep(ws.state_dir, stop, desk.answer)

    threading.Thread(target=front_door, daemon=True, name="shipline-front-door").start()
    pid_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # whole or not at all: whoever sees the file (`worker --stop`, a script) reads the pid
    written = pid_file.with_name(f".{pid_file.name}.{os.getpid()}")
    written.write_text(str(os.getpid()))
    os.replace(written, pid_file)
    state.output.error(f"shipline worker {name} running (pid {os.getpid()})")
    try:
        while not stop.wait(STATE_REFRESH_SECONDS):
            for target in _restorable(runtime):
                target.write_state()  # `shipline status` reads it
    finally:
        for target in _restorable(runtime):
            target.close()  # the replicas this worker supervised stop with it
        durable.shutdown()
        pid_file.unlink(missing_ok=True)
        state.output.error(
            "shipline worker stopped; unfinished runs resume when a worker starts again"
        )
        sys.stdout.flush()
        sys.stderr.flush()
        # Threads of runs that wait (for people, clocks, locks) would keep the process alive; their
        # state is durable, so leaving now loses nothing.
        os._exit(0)


STATE_REFRESH_SECONDS = 10.0


def _restorable(runtime: Any) -> list[Any]:
    from shipline.domain.ports import Restorable

    return [t for t in list(runtime.targets.values()) if isinstance(t, Restorable)]


def _fenced() -> None:
    """Another worker took this one for dead and runs its runs now: stop at once, so that no
    step runs twice (its local services stop with it; the next worker here restores them)."""
    sys.stderr.write("shipline worker: taken for dead by another worker; stopping now\n")
    sys.stderr.flush()
    os._exit(75)


def _restore_targets(runtime: Any, ws: Any, state: Any) -> None:
    """Bring back the services this state folder ran in a worker before it stopped or died."""
    from shipline.engine.deploy_actions import restore_targets
    from shipline.engine.runtime import install
    from shipline.errors import AlreadyRunning, ShiplineError

    install(runtime)
    try:
        problems = restore_targets(ws, state.output.error)
    except AlreadyRunning:
        raise  # another worker serves this state folder: refuse to start, touch nothing of it
    except ShiplineError as exc:
        state.output.error(f"services not restored: {exc}")
        return
    for problem in problems:
        state.output.error(problem)


def _stop_worker(pid_file: Any, name: str, state: Any) -> None:
    if not pid_file.exists():
        state.output.error(f"no worker {name} is running here")
        raise typer.Exit(1)
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        state.output.error(f"worker {name}: its pid file {pid_file} holds no pid; remove it")
        raise typer.Exit(1) from None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        state.output.error(f"worker {name} (pid {pid}) was not running")
        raise typer.Exit(1) from None
    for _ in range(300):
        if not pid_file.exists():
            break
        time.sleep(0.1)
    state.output.error(f"worker {name} stopped")


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """List runs, newest first.
    Example: shipline runs list --env qa --limit 10"""
    from shipline.cli.remote import current

    remote = current()
    rows: list[dict[str, Any]]
    if remote is not None:  # signed in: the server's runs, those the person may see
        query = urllib.parse.urlencode({"limit": limit, **({"env": env} if env else {})})
        rows = remote.get(f"/api/v1/runs?{query}")
    else:
        from shipline.engine.locations import database_url_of
        from shipline.engine.reads import by_environment, recent_runs, run_summary

        path = state_of(ctx).config_path()
        database = database_url_of(path, os.environ)

        def listed(name: str | None) -> "list[RunRecord]":
            return recent_runs(database, limit=limit, environment=name)

        def config() -> "Config":
            from shipline.config.loader import load_config

            return load_config(path)

        found = by_environment(env, listed, config)[1] if env else listed(None)
        rows = [run_summary(r) for r in found]
    output = state_of(ctx).output
    if as_json:
        output.json(rows)
        return
    output.table(
        f"{len(rows)} runs",
        ["run", "pipeline", "environment", "phase", "requested by", "requested at", "reason"],
        [
            [
                r["id"],
                r["pipeline"],
                where(r) or "-",
                r["phase"],
                r["requestedBy"],
                r["requestedAt"][:19],
                r["reason"] or "",
            ]
            for r in rows
        ],
    )


@runs_app.command("show")
def runs_show(ctx: typer.Context, run: int, as_json: JsonFlag = False) -> None:
    """Show a run: stages, steps, votes.
    Example: shipline runs show 12"""
    from shipline.cli.follow import render_stages
    from shipline.cli.remote import current
    from shipline.engine.runs import run_details

    remote = current()
    data = remote.get(f"/api/v1/runs/{run}") if remote else run_details(_service(ctx), run)
    output = state_of(ctx).output
    if as_json:
        output.json(data)
        return
    output.line(
        f"run {data['id']} {data['pipeline']} {where(data)}: {data['phase']}"
        + (f" ({data['reason']})" if data["reason"] else "")
    )
    emergency = data["emergencyReason"]
    output.line(
        f"requested by {data['requestedBy']} at {data['requestedAt'][:19]}"
        + (f"; emergency: {emergency}" if emergency else "")
    )
    if data["cancelReason"]:
        output.line(f"cancelled: {data['cancelReason']}")
    output.console.print(render_stages(data["stages"]))
    if data["votes"]:
        output.table(
            "votes", ["stage", "who", "vote", "comment", "at"],
            [[v["stage"], v["user"], "approve" if v["approve"] else "reject", v["comment"] or "",
              v["at"][:19]] for v in data["votes"]],
        )  # fmt: skip
    for line in _infra_lines(data["stages"]):
        output.line(line)
    if data.get("report"):
        output.line(f"report: {data['report']}")


def _infra_lines(stages: list[dict[str, Any]]) -> list[str]:
    """What an infrastructure run's approvers look at: each saved plan's changes by address, and
    the outputs an apply recorded (the spec's KEY OUTPUTS)."""
    lines: list[str] = []
    for stage in stages:
        for key, value in sorted((stage.get("outputs") or {}).items()):
            kind, _, stack = key.partition(".")
            if kind == "plan" and isinstance(value, dict):
                what = "destroy plan" if value.get("destroying") else "plan"
                lines.append(f"{stage['name']} {what} of {stack}: {value.get('line')}")
                for mark, action in (("+", "add"), ("~", "change"), ("-/+", "replace"),
                                     ("-", "destroy")):  # fmt: skip
                    lines += [f"  {mark} {address}" for address in value.get(action, [])[:50]]
            elif kind == "outputs" and isinstance(value, dict):
                lines.append(f"{stage['name']} KEY OUTPUTS of {stack}:")
                lines += [f"  {name} = {shown}" for name, shown in sorted(value.items())]
    return lines


@runs_app.command("logs")
def runs_logs(
    ctx: typer.Context,
    run: int,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream until the run ends.")
    ] = False,
    stage: Annotated[
        str | None, typer.Option("--stage", help="Only this stage (or environment: qa).")
    ] = None,
    service: Annotated[
        str | None, typer.Option("--service", help="Only this service's step.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Print a run's events and step logs, with timestamps; --follow streams them until the run
    ends. Example: shipline runs logs 12 --follow --stage qa --service api"""
    from shipline.cli.follow import entry_filter, stamp, stream_logs

    runs = _service(ctx)
    runs.get(run)
    output = state_of(ctx).output
    if follow:
        if as_json:
            raise UserError("--follow streams lines; drop --json (or read them after the run)")
        try:
            with runs.pause_for(run) as pause:
                stream_logs(runs, run, output.line, stage=stage, step=service, pause=pause)
        except KeyboardInterrupt:
            _interrupted(output, run)
        return
    keep = entry_filter(stage, service)
    events = [e for e in runs.store.events(run) if keep(e)]
    logs = [e for e in runs.store.logs(run) if keep(e)]
    if as_json:
        output.json(
            {
                "events": [
                    {
                        "at": e["at"].isoformat(),
                        "kind": e["kind"],
                        "stage": e["stage"],
                        "step": e["step"],
                        "message": e["message"],
                    }
                    for e in events
                ],
                "logs": [
                    {
                        "at": entry["at"].isoformat(),
                        "stage": entry["stage"],
                        "step": entry["step"],
                        "line": entry["line"],
                    }
                    for entry in logs
                ],
            }
        )
        return
    for e in events:
        where = "/".join(p for p in (e["stage"], e["step"]) if p)
        output.line(f"{stamp(e['at'])} {e['kind']:<18} {where:<24} {e['message']}")
    for entry in logs:
        output.line(f"{stamp(entry['at'])} {entry['stage']}/{entry['step']} | {entry['line']}")


def _interrupted(output: Any, run: int) -> None:
    """Ctrl-C while following: the run is not stopped; say how to follow or cancel it."""
    from shipline.cli.door import say_interrupted

    say_interrupted(output, run)
    raise typer.Exit(130)


@runs_app.command("cancel")
def runs_cancel(
    ctx: typer.Context,
    run: int,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit log).")] = None,
) -> None:
    """Cancel a run: running steps stop at their next check, waits end at once.
    Example: shipline runs cancel 12 --reason 'wrong tag'"""
    from shipline.cli.remote import current

    remote = current()
    if remote is not None:
        remote.post(f"/api/v1/runs/{run}/cancel", {"reason": reason})
    else:
        from shipline.cli.door import submit_at_door

        who = _actor()
        if submit_at_door(state_of(ctx), "cancel", {"run": run, "reason": reason}, who) is None:
            _service(ctx).cancel(run, who, reason)
    from shipline.cli.door import say_cancel_requested

    say_cancel_requested(state_of(ctx).output, run)


def _vote(
    ctx: typer.Context,
    run: int,
    stage: str | None,
    user: str | None,
    comment: str | None,
    approve: bool,
) -> None:
    """Vote as the signed-in person through the server, or (single-user mode) as `--as`."""
    from shipline.cli.remote import current, refuse_as

    remote = current()
    if remote is not None:
        refuse_as(user, remote)
        answer = remote.post(
            f"/api/v1/runs/{run}/{'approve' if approve else 'reject'}",
            {"stage": stage, "comment": comment},
        )
        who, voted, waiting = answer["by"], answer["stage"], answer["waitingOn"]
    else:
        if user is None:
            raise UserError(
                "--as USER is needed in single-user mode (no server signed in)",
                hint="shipline approve RUN --as NAME, or `shipline login --server URL`",
            )
        from shipline.cli.door import submit_at_door

        who = _actor(user)
        ballot = {"run": run, "approve": approve, "stage": stage, "comment": comment}
        answer = submit_at_door(state_of(ctx), "vote", ballot, who)  # a worker's, if one runs
        if answer is not None:
            voted, waiting = str(answer["stage"]), [str(w) for w in answer["waitingOn"]]
        else:
            effect = _service(ctx).vote(run, who, approve=approve, stage=stage, comment=comment)
            voted, waiting = effect.stage, list(effect.waiting_on)
    from shipline.cli.door import say_voted

    say_voted(state_of(ctx).output, run, voted, who, waiting, approve=approve)


StageOpt = Annotated[
    str | None, typer.Option("--stage", help="The waiting stage (default: the one waiting).")
]
AsOpt = Annotated[
    str | None,
    typer.Option("--as", help="Who votes, in single-user mode (refused when signed in)."),
]
CommentOpt = Annotated[
    str | None, typer.Option("--comment", help="Kept with the vote and in the audit log.")
]


def approve(
    ctx: typer.Context,
    run: int,
    user: AsOpt = None,
    stage: StageOpt = None,
    comment: CommentOpt = None,
) -> None:
    """Approve a run's waiting stage.
    Example: shipline approve 12 --as quinn --comment 'CAB-7'"""
    _vote(ctx, run, stage, user, comment, True)


def reject(
    ctx: typer.Context,
    run: int,
    user: AsOpt = None,
    stage: StageOpt = None,
    comment: CommentOpt = None,
) -> None:
    """Reject a run's waiting stage (the stage fails).
    Example: shipline reject 12 --as quinn --comment 'not before the freeze'"""
    _vote(ctx, run, stage, user, comment, False)


canary_app = typer.Typer(help="A running canary: promote or abort it.", no_args_is_help=True)


CanaryServiceOpt = Annotated[
    str | None,
    typer.Option("--service", "-s", help="Only this service's canary (default: each one running)."),
]


def _canary(
    ctx: typer.Context,
    run: int,
    user: str | None,
    comment: str | None,
    promote: bool,
    service: str | None,
) -> None:
    from shipline.cli.remote import current, refuse_as

    state = state_of(ctx)
    remote = current()
    if remote is not None:
        refuse_as(user, remote)
        body = {"action": "promote" if promote else "abort", "comment": comment}
        if service:
            body["service"] = service
        step = remote.post(f"/api/v1/runs/{run}/canary", body)["step"]
    else:
        step = _service(ctx).canary(
            run, _actor(user), promote=promote, comment=comment, service=service
        )
    what = "promoted past its current step" if promote else "aborted; stable is being restored"
    state.output.line(f"run {run}: canary of {step} {what}")


@canary_app.command("promote")
def canary_promote(
    ctx: typer.Context,
    run: int,
    user: AsOpt = None,
    comment: CommentOpt = None,
    service: CanaryServiceOpt = None,
) -> None:
    """Let a canary go past its pause or analysis (the deploy stage's approvers; audited).
    Example: shipline canary promote 12 --service auth-service"""
    _canary(ctx, run, user, comment, True, service)


@canary_app.command("abort")
def canary_abort(
    ctx: typer.Context,
    run: int,
    user: AsOpt = None,
    comment: CommentOpt = None,
    service: CanaryServiceOpt = None,
) -> None:
    """Roll a canary back now: all traffic returns to stable (audited).
    Example: shipline canary abort 12 --service auth-service"""
    _canary(ctx, run, user, comment, False, service)


def watch_started(
    state: Any,
    ws: Any,
    run_id: int,
    *,
    detach: bool,
    as_json: bool,
    after: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """`watch` a run just queued for workspace `ws`."""
    from shipline.engine.assembly import run_service

    watch(
        state, run_service(ws), run_id, detach=detach, as_json=as_json,
        queued=f"run {run_id} queued", after=after,
    )  # fmt: skip


def detached(state: Any, run_id: int, phase: str, *, as_json: bool, queued: str) -> None:
    """A run started and left to go on: say how to follow it; exit 3."""
    from shipline.cli.door import say_detached

    say_detached(state.output, run_id, phase, as_json=as_json, queued=queued)
    raise typer.Exit(3)


def watch(
    state: Any,
    service: Any,
    run_id: int,
    *,
    detach: bool,
    as_json: bool,
    queued: str,
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    after: Callable[[dict[str, Any]], None] | None = None,
    details: Callable[[Any, int], dict[str, Any]] | None = None,
) -> None:
    """After starting a run: detach (exit 3), wait and print JSON, or follow it live (and
    then show what `after` makes of its details); `details` reads a run (default: the local
    store's view of it)."""
    if detach:
        detached(state, run_id, service.get(run_id).phase, as_json=as_json, queued=queued)
    try:
        code = _wait(
            state, service, run_id, as_json=as_json, extra=extra, after=after, details=details
        )
    except KeyboardInterrupt:
        _interrupted(state.output, run_id)
    if code:
        raise typer.Exit(code)


def _wait(
    state: Any,
    service: Any,
    run_id: int,
    *,
    as_json: bool,
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None,
    after: Callable[[dict[str, Any]], None] | None,
    details: Callable[[Any, int], dict[str, Any]] | None = None,
) -> int:
    """Wait for the run's end: the final JSON document, one line (--quiet), timestamped lines
    (stdout is not a terminal) or the live view; then what `after` shows. Between looks it
    pauses on the run's bell where the service has one (a worker of this machine rings it when
    the run moves), else a quarter of a second."""
    from shipline.engine.runs import run_details

    verbose = state.verbose and details is None  # step logs are read from the local store
    pause_for = getattr(service, "pause_for", None)
    with pause_for(run_id) if pause_for else contextlib.nullcontext(time.sleep) as wait:
        return _wait_with(state, service, run_id, wait, as_json=as_json, extra=extra,
                          after=after, details=details or run_details, verbose=verbose)  # fmt: skip


def _wait_with(
    state: Any,
    service: Any,
    run_id: int,
    wait: Callable[[float], object],
    *,
    as_json: bool,
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None,
    after: Callable[[dict[str, Any]], None] | None,
    details: Callable[[Any, int], dict[str, Any]],
    verbose: bool,
) -> int:
    from shipline.cli.door import EXIT
    from shipline.cli.follow import follow, follow_plain

    if as_json or state.quiet:
        while service.get(run_id).phase not in EXIT:
            wait(0.25)
        data = details(service, run_id)
        from shipline.cli.door import print_result

        return print_result(
            state.output, run_id, data, extra(data) if extra else {}, as_json=as_json
        )
    if state.output.console.is_terminal:
        code = follow(service, run_id, state.output.console, details, pause=wait)
    else:
        state.output.line(f"run {run_id} queued")
        code = follow_plain(
            service, run_id, state.output.line, details, verbose=verbose, pause=wait
        )
    if after is not None:
        after(details(service, run_id))
    return code
