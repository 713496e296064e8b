"""`shipline deploy`: start a deploy run and follow it live (or detach)."""

from typing import Annotated, Any

import typer

from shipline.cli.context import JsonFlag, State, state_of
from shipline.errors import UserError

EmergencyOpt = Annotated[
    bool, typer.Option("--emergency", help="Outside business hours, with the emergency approvals.")
]
ReasonOpt = Annotated[
    str | None, typer.Option("--reason", help="Why (required with --emergency; audited).")
]


def _exit_with(code: int | None) -> None:
    """End the command with `code`, the result a worker gave; None: carry on (no worker)."""
    if code is not None:
        raise typer.Exit(code)


def deploy(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", "-e", help="Environment name or alias.")],
    tag: Annotated[
        str | None, typer.Option("--tag", "-t", help="Image tag (version) to deploy.")
    ] = None,
    services: Annotated[
        str | None,
        typer.Option("--services", "-s", help="'all' or a,b,c (default all; named on protected)."),
    ] = None,
    release: Annotated[
        str | None,
        typer.Option("--release", "-r", help="Deploy each service's version from this release."),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Return at once (exit 3) and let the run go on.")
    ] = False,
    emergency: EmergencyOpt = False,
    reason: ReasonOpt = None,
    parameters: Annotated[
        list[str] | None,
        typer.Option("--set", help="Run parameter NAME=VALUE (the last variable layer)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Redeploy even when the environment is in sync.")
    ] = False,
    skip_tests: Annotated[
        bool, typer.Option("--skip-tests", help="Leave out the environment's test gates.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Deploy services at a tag (or a release's versions) to an environment, through its
    approvals and checks, then verify them and run its test gates.
    Example: shipline deploy --env qa --services api,web --tag 1.4.0"""
    from shipline.cli.remote import acting_user, current, start_on_server
    from shipline.cli.runs import watch_started

    state = state_of(ctx)
    remote = current()
    if remote is not None:  # signed in: the server checks the person's roles and records them
        body = {"environment": env, "services": services, "tag": tag, "release": release,
                "set": parameters or [], "skip_tests": skip_tests, "force": force,
                "emergency": emergency, "reason": reason}  # fmt: skip
        start_on_server(state, remote, "/api/v1/runs", body, detach=detach, as_json=as_json)
        return
    if not parameters:  # a worker of this folder may take it, warm: no start-up
        from shipline.cli.door import deploy_at_door, submit_at_door, watch_at_door

        args = {"env": env, "services": services, "tag": tag, "release": release,
                "emergency": emergency, "reason": reason, "force": force,
                "skip_tests": skip_tests}  # fmt: skip
        if detach:
            deploy_at_door(state, args, as_json=as_json)  # exits when a worker answered
        else:
            taken = submit_at_door(state, "deploy", args)
            if taken is not None:
                run = int(taken["run"])
                if as_json or state.quiet:
                    _exit_with(watch_at_door(state, state.output, run, as_json=as_json))
                watch_started(state, state.workspace(), run, detach=False, as_json=as_json)
                return
    from shipline.engine.submit import submit_deploy

    ws = state.workspace()
    record = submit_deploy(
        ws,
        env=env,
        services=services,
        tag=tag,
        actor=acting_user(),
        parameters=parameters,
        emergency=emergency,
        reason=reason,
        force=force,
        release=release,
        skip_tests=skip_tests,
    )
    watch_started(state, ws, record.id, detach=detach, as_json=as_json)


def promote(
    ctx: typer.Context,
    source: Annotated[str, typer.Option("--from", help="Where the versions succeeded.")],
    targets: Annotated[
        str,
        typer.Option(
            "--to", help="Environment(s) above it (qa or qa,uat1,uat2), or all: every rung above."
        ),
    ],
    services: Annotated[
        str | None,
        typer.Option("--services", "-s", help="'all' or a,b,c (default all; named on protected)."),
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="One version for all.")] = None,
    release: Annotated[
        str | None, typer.Option("--release", "-r", help="Each service's version from it.")
    ] = None,
    skip_tests: Annotated[
        bool, typer.Option("--skip-tests", help="Leave out the environments' test gates.")
    ] = False,
    canary: Annotated[
        bool, typer.Option("--canary", help="A canary in every environment (default steps).")
    ] = False,
    emergency: EmergencyOpt = False,
    reason: ReasonOpt = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Return at once (exit 3) and let the run go on.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check it and show each environment's gates and versions; queue nothing.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Promote what succeeded in one environment up the ladder, one environment after another
    (approvals, deploy, verification, test gates; a failure rolls that environment back and
    stops). Example: shipline promote --from dev --to qa,uat1 --release 2026.11.1"""
    from shipline.cli.remote import acting_user, current, start_on_server
    from shipline.cli.runs import detached, watch_started

    state = state_of(ctx)
    remote = current()
    body = {"source": source, "targets": targets, "services": services, "tag": tag,
            "release": release, "skip_tests": skip_tests, "canary": canary,
            "emergency": emergency, "reason": reason}  # fmt: skip
    if dry_run:
        if detach:
            raise UserError("--dry-run queues nothing: leave out --detach")
        if remote is not None:  # the server's store, and the signed-in person's roles
            shown = remote.post("/api/v1/promotions/preview", body)
        else:
            from shipline.engine.promotion import preview_promotion

            shown = preview_promotion(
                state.workspace(), source=source, targets=targets, services=services, tag=tag,
                release=release, skip_tests=skip_tests, canary=canary, emergency=emergency,
                reason=reason,
            )  # fmt: skip
        _show_promotion(state, shown, as_json=as_json)
        return
    if remote is not None:
        start_on_server(state, remote, "/api/v1/promotions", body, detach=detach,
                        as_json=as_json)  # fmt: skip
        return
    from shipline.cli.door import submit_at_door, watch_at_door

    taken = submit_at_door(state, "promote", body)  # a worker of this folder, warm
    if taken is not None:
        run = int(taken["run"])
        if detach:
            detached(state, run, str(taken["phase"]), as_json=as_json, queued=f"run {run} queued")
        if as_json or state.quiet:
            _exit_with(watch_at_door(state, state.output, run, as_json=as_json))
        watch_started(state, state.workspace(), run, detach=False, as_json=as_json)
        return
    from shipline.engine.promotion import submit_promotion

    ws = state.workspace()
    record = submit_promotion(
        ws, source=source, targets=targets, services=services, tag=tag, release=release,
        actor=acting_user(), skip_tests=skip_tests, canary=canary, emergency=emergency,
        reason=reason,
    )  # fmt: skip
    watch_started(state, ws, record.id, detach=detach, as_json=as_json)


def _show_promotion(state: State, shown: dict[str, Any], *, as_json: bool) -> None:
    """`promote --dry-run`: the promotion's rungs and versions (`preview_promotion`)."""
    from shipline.cli import views

    if as_json:
        state.output.json(shown)
        return
    rungs = shown["environments"]
    release = f" (release {shown['release']})" if shown["release"] else ""
    state.output.line(
        f"promote {shown['from']} -> {', '.join(r['environment'] for r in rungs)}{release}:"
        " dry run, nothing queued"
    )
    if shown.get("emergency"):
        state.output.line(
            f"emergency ({shown['emergency']}): outside business hours, with the emergency"
            " approvals too"
        )
    state.output.table(
        None,
        ["environment", "approvals", "checks", "strategy", "test gates", "changes"],
        [
            [
                r["environment"],
                views.approvals_text(r["approvals"]),
                views.checks_text(r["checks"]),
                _strategy_text(r),
                ", ".join(r["tests"]) or "none",
                _changes(r["versions"]),
            ]
            for r in rungs
        ],
    )
    services = list(rungs[0]["versions"]) if rungs else []
    state.output.table(
        "versions: now -> after",
        ["service", *(r["environment"] for r in rungs)],
        [[name, *(_change(r["versions"][name]) for r in rungs)] for name in services],
    )


def _strategy_text(rung: dict[str, Any]) -> str:
    """A rung's strategy; for a canary, how many go out as one, how long they take (one after
    another) and why the others roll."""
    from shipline.engine.reads import took

    kind = str(rung["strategy"]["type"])
    if kind != "canary":
        return kind
    instead: dict[str, int] = {}
    for version in rung["versions"].values():
        if version.get("why"):
            instead[version["why"]] = instead.get(version["why"], 0) + 1
    canaries = rung.get("canaries") or {"count": 0}
    count, each = canaries["count"], canaries.get("seconds")
    if not count:
        return f"rolling ({'; '.join(instead)}), canary configured"
    if each is None:
        timing = "each waits for a promote"
    elif count == 1:
        timing = took(each)
    else:
        timing = f"{took(each)} each, {took(canaries['inAll'])} in all"
    text = f"canary ({count}: {timing})"
    why = "; ".join(f"{n}: {reason}" for reason, n in instead.items())
    return f"{text}, rolling ({why})" if instead else text


def _change(version: dict[str, str | None]) -> str:
    if version["now"] == version["after"]:
        return f"{version['after']} (already)"
    return f"{version['now'] or '-'} -> {version['after']}"


def _changes(versions: dict[str, dict[str, str | None]]) -> str:
    moving = sum(1 for v in versions.values() if v["now"] != v["after"])
    return f"{moving} of {len(versions)} service(s)"


def trigger(
    ctx: typer.Context,
    ref: Annotated[str, typer.Option("--ref", help="refs/heads/B, refs/tags/T or refs/pull/N")],
    tag: Annotated[
        str | None, typer.Option("--tag", "-t", help="The version CI built for the ref.")
    ] = None,
    release: Annotated[
        str | None, typer.Option("--release", "-r", help="The release CI made for the ref.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would run.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Apply the trigger rules to a branch or tag that moved (the spec's by default: develop ->
    dev, main -> staging, v* tags -> live with approvals): the command a git server's webhook
    or a CI job calls. Example: shipline trigger --ref refs/heads/develop --tag 1.4.0-dev.7"""
    from shipline.cli.remote import acting_user
    from shipline.engine.promotion import run_triggers

    state = state_of(ctx)
    plan = run_triggers(
        state.workspace(), ref, tag=tag, release=release, actor=acting_user(),
        dry_run=dry_run,
    )  # fmt: skip
    if as_json:
        state.output.json(plan)
        return
    if not plan:
        state.output.line(f"{ref}: no trigger rule matches; nothing runs")
        return
    for entry in plan:
        what = (
            f"deploy to {entry['environment']}"
            + (" (waits for its approvals)" if entry.get("approvals") else "")
            if entry["action"] == "deploy"
            else "CI only (no deploy)"
        )
        done = f": run {entry['run']} queued" if "run" in entry else (
            " (dry run)" if dry_run else "")  # fmt: skip
        state.output.line(f"{ref}: {what}{done}")
