"""`shipline preview | rollback | restart | scale | down | status | logs` on an environment."""

from typing import Annotated, Any

import typer

from shipline.cli.context import JsonFlag, State, state_of
from shipline.errors import UserError

EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment name or alias.")]
ServicesOpt = Annotated[str, typer.Option("--services", "-s", help="'all' or a,b,c.")]
DetachOpt = Annotated[bool, typer.Option("--detach", help="Return at once (exit 3).")]


def _run(
    ctx: typer.Context,
    env: str,
    services: str | None,
    action: str,
    detach: bool,
    as_json: bool,
    after: Any = None,
    **extra: Any,
) -> None:
    from shipline.cli.remote import acting_user, current, start_on_server
    from shipline.cli.runs import watch_started
    from shipline.engine.submit import submit_action

    state = state_of(ctx)
    remote = current()
    if remote is not None and action in ("restart", "rollback", "scale"):
        body = {"pipeline": action, "environment": env, "services": services, **extra}
        start_on_server(state, remote, "/api/v1/runs", body, detach=detach, as_json=as_json)
        return
    ws = state.workspace()
    record = submit_action(
        ws, env=env, services=services, action=action, actor=acting_user(),
        **extra,
    )  # fmt: skip
    watch_started(state, ws, record.id, detach=detach, as_json=as_json, after=after)


def preview(
    ctx: typer.Context,
    env: EnvOpt,
    tag: Annotated[str, typer.Option("--tag", "-t", help="Tag to compare.")],
    services: ServicesOpt = "all",
    parameters: Annotated[
        list[str] | None,
        typer.Option("--set", help="Run parameter NAME=VALUE, as the deploy would get it."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show what a deploy would change: versions, replicas, variables (values masked) and, where
    the target can tell (kubernetes: a server-side dry run), every changed field.
    Example: shipline preview --env qa --tag 1.4.0 --set LOG_LEVEL=debug"""
    state = state_of(ctx)

    def changes(details: dict[str, Any]) -> None:
        rows: list[list[Any]] = []
        for stage in details.get("stages", []):
            for service, plan in sorted((stage.get("outputs") or {}).items()):
                if not isinstance(plan, dict) or "inSync" not in plan:
                    continue
                if plan["inSync"]:
                    rows.append([service, "", "(in sync)", "", ""])
                spec = plan.get("changes") or {}
                if plan.get("create"):  # a new service: its version, then its objects
                    spec = {"version": spec.get("version") or {}}
                for name, change in spec.items():
                    rows.append([service, "spec", name, change.get("from"), change.get("to")])
                for variable in plan.get("variables") or []:  # secret values are ***
                    rows.append([service, "env", variable["name"], variable["from"],
                                 variable["to"]])  # fmt: skip
                for field in plan.get("fields") or []:
                    rows.append([service, field["object"], field["path"] or "(whole object)",
                                 field["from"], field["to"]])  # fmt: skip
        if rows:
            state.output.table(
                "what the deploy would change", ["service", "object", "field", "from", "to"], rows
            )

    _run(ctx, env, services, "preview", False, as_json, after=changes, version=tag,
         parameters=parameters or [])  # fmt: skip


def rollback(
    ctx: typer.Context,
    env: EnvOpt,
    services: ServicesOpt,
    revision: Annotated[
        int, typer.Option("--revision", help="Revision to restore (0: the previous).")
    ] = 0,
    detach: DetachOpt = False,
    as_json: JsonFlag = False,
) -> None:
    """Roll services back to a revision.
    Example: shipline rollback --env qa --services api --revision 3"""
    _run(ctx, env, services, "rollback", detach, as_json, revision=revision)


def restart(
    ctx: typer.Context,
    env: EnvOpt,
    services: ServicesOpt,
    detach: DetachOpt = False,
    as_json: JsonFlag = False,
) -> None:
    """Rolling restart of services.
    Example: shipline restart --env qa --services api"""
    _run(ctx, env, services, "restart", detach, as_json)


def scale(
    ctx: typer.Context,
    env: EnvOpt,
    services: ServicesOpt,
    replicas: Annotated[int, typer.Option("--replicas", help="Replica count.")],
    override_bounds: Annotated[
        str | None,
        typer.Option("--override-bounds", help="Why the tier's min/max may be left (audited)."),
    ] = None,
    detach: DetachOpt = False,
    as_json: JsonFlag = False,
) -> None:
    """Scale services to a replica count (within the tier's bounds; kept across deploys).
    Example: shipline scale --env qa --services api --replicas 3"""
    _run(
        ctx, env, services, "scale", detach, as_json, replicas=replicas,
        override=override_bounds,
    )  # fmt: skip


def down(
    ctx: typer.Context, env: EnvOpt, detach: DetachOpt = False, as_json: JsonFlag = False
) -> None:
    """Stop every service of an environment that runs on this machine.
    Example: shipline down --env local"""
    _run(ctx, env, None, "down", detach, as_json)


def history(
    ctx: typer.Context,
    env: EnvOpt,
    service: Annotated[str, typer.Option("--service", help="Service.")],
    as_json: JsonFlag = False,
) -> None:
    """A service's revisions in an environment: version, when, why, by whom, which run.
    Example: shipline history --env qa --service api"""
    from shipline.engine.history import read_history
    from shipline.engine.pipelines import find_environment, pick_services

    state = state_of(ctx)
    ws = state.workspace()
    environment = find_environment(ws.config, env)
    names = pick_services(ws.config, service)
    if len(names) != 1:
        raise UserError("--service takes one service name")
    name = names[0]
    rows = [r.as_dict() for r in read_history(ws, environment, name)]
    if as_json:
        state.output.json(rows)
        return
    if not rows:
        state.output.line(f"{name} has no revisions in {environment.name}")
        return
    state.output.table(
        f"history of {name} in {environment.name}",
        ["revision", "version", "replicas", "at", "cause", "by", "run"],
        [
            [r["revision"], r["version"], r["replicas"], str(r["at"])[:19], r["cause"],
             r["by"] or "-", r["run"] or "-"]
            for r in rows
        ],
    )  # fmt: skip


def ladder_table(state: State, rows: list[dict[str, Any]]) -> None:
    """`service_status` rows as a table with the ladder as columns: each service's version,
    health and release in every environment."""
    ladder = list(dict.fromkeys(r["environment"] for r in rows))
    cells: dict[str, dict[str, str]] = {}
    for r in rows:
        cell = "-"
        if r["version"]:
            cell = f"{r['version']} {r['health']}" + (
                f" [{r['release']}]" if r.get("release") else ""
            )
        cells.setdefault(r["service"], {})[r["environment"]] = cell
    state.output.table(
        "versions up the ladder",
        ["service", *ladder],
        [[svc, *(found.get(e, "-") for e in ladder)] for svc, found in cells.items()],
    )


def status(
    ctx: typer.Context,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this one.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Which version of each service runs where, its replicas and health, and its last deploy.
    Example: shipline status --env qa --json"""
    from shipline.engine.pipelines import find_environment
    from shipline.engine.status import service_status

    state = state_of(ctx)
    ws = state.workspace()
    only = find_environment(ws.config, env).name if env else None
    rows = service_status(ws, only)
    if as_json:
        state.output.json(rows)
        return
    if not rows:
        state.output.line("nothing deployed yet" + (f" to {only}" if only else ""))
        return
    if not only:  # the ladder as columns: what runs where, and from which release
        ladder_table(state, rows)
        return
    state.output.table(
        f"status{' of ' + only if only else ''}",
        [
            "environment",
            "service",
            "version",
            "replicas",
            "health",
            "address",
            "revision",
            "last deploy",
        ],
        [
            [
                r["environment"],
                r["service"],
                (r["version"] or "-")
                + (
                    f" (canary {r['canary']} at {(r['weights'] or {}).get(r['canary'], 0)} %)"
                    if r.get("canary")
                    else ""
                ),
                f"{r['ready']}/{r['desired']}" if r["desired"] is not None else "-",
                r["health"],
                r["address"] or "-",
                r["revision"] or "-",
                f"run {r['lastDeploy']['run']} {r['lastDeploy']['phase']}"
                if r["lastDeploy"]
                else "-",
            ]
            for r in rows
        ],
    )


def logs(
    ctx: typer.Context,
    env: EnvOpt,
    service: Annotated[str, typer.Option("--service", help="Service.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", help="Lines from the end of each log.")
    ] = 50,
) -> None:
    """Print the logs of a service's replicas.
    Example: shipline logs --env local --service api --follow"""
    from shipline.engine import service_logs

    state = state_of(ctx)
    ws = state.workspace()
    for source, line in service_logs.tail(ws, env, service, lines):
        state.output.line(f"[{source}] {line}")
    if follow:
        for source, line in service_logs.follow(ws, env, service):
            state.output.line(f"[{source}] {line}")
