"""The `shipline` command line. It parses, calls the engine, and prints; no business logic."""

import copy
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click import exceptions as click  # typer vendors click; its errors live here

from shipline.cli import actions
from shipline.cli.ci import ci_app
from shipline.cli.context import JsonFlag, State, state_of
from shipline.cli.demo import demo
from shipline.cli.deploy import deploy, promote, trigger
from shipline.cli.infra import infra_app
from shipline.cli.output import Output
from shipline.cli.params import lighten
from shipline.cli.quick import GLOBAL_FLAGS, GLOBAL_VALUES, failed, leave
from shipline.cli.release import release_app
from shipline.cli.runs import approve, canary_app, reject, runs_app, worker
from shipline.cli.server import login, logout, server, tokens_app, users_app, whoami
from shipline.domain.masking import Masker
from shipline.errors import StoreError, UserError

app = typer.Typer(
    name="shipline",
    help="shipline: continuous delivery from commit to production.",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
services_app = typer.Typer(help="The services of the project.", no_args_is_help=True)
envs_app = typer.Typer(help="The environments of the ladder.", no_args_is_help=True)
vars_app = typer.Typer(help="Resolved variables.", no_args_is_help=True)
secrets_app = typer.Typer(
    help="Secrets in the configured stores (values via stdin).", no_args_is_help=True
)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
app.add_typer(services_app, name="services")
app.add_typer(envs_app, name="envs")
app.add_typer(vars_app, name="vars")
app.add_typer(secrets_app, name="secrets")
app.add_typer(audit_app, name="audit")
app.add_typer(runs_app, name="runs")
app.add_typer(ci_app, name="ci")
app.add_typer(release_app, name="release")
app.add_typer(canary_app, name="canary")
app.add_typer(infra_app, name="infra")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.command()(server)
app.command()(login)
app.command()(logout)
app.command()(whoami)
app.command()(worker)
app.command()(deploy)
app.command()(promote)
app.command()(trigger)
app.command()(demo)
for _command in (
    actions.preview,
    actions.rollback,
    actions.restart,
    actions.scale,
    actions.down,
    actions.status,
    actions.history,
    actions.logs,
):
    app.command()(_command)
app.command()(approve)
app.command()(reject)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"shipline {version('shipline')}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", help="Path to shipline.yaml (default: search upwards)."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Following a run: print only its result.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Following a run: print its step logs too.")
    ] = False,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colours (also: NO_COLOR=1).")
    ] = False,
    show_version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="Print the version."),
    ] = False,
) -> None:
    """shipline: continuous delivery from commit to production. Global options go before or
    after the command: shipline --config x/shipline.yaml status, or shipline status -c x/..."""
    state = state_of(ctx)
    state.config = config
    state.quiet, state.verbose = quiet, verbose
    if no_color:
        state.output.no_color = True


@app.command()
def validate(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Check the configuration; print every problem as file:line:col.
    Example: shipline validate --json"""
    from shipline.config.loader import config_warnings
    from shipline.config.locate import find_config
    from shipline.errors import ConfigError, ConfigErrors

    state = state_of(ctx)
    path = find_config(state.config)
    try:
        config, warnings = config_warnings(path)
    except ConfigError as exc:
        if not as_json:
            raise
        errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
        state.output.json({"valid": False, "errors": [_error_json(e) for e in errors]})
        raise typer.Exit(2) from None
    summary = {
        "valid": True,
        "config": str(path),
        "services": len(config.services),
        "stacks": len(config.stacks),
        "environments": len(config.environments),
        "variableGroups": len(config.variable_groups),
        "warnings": [_error_json(w) for w in warnings],
    }
    for warning in warnings if not as_json else []:
        loc = warning.location
        where = f"{loc.file}:{loc.line}:{loc.column}: " if loc else ""
        state.output.error(f"{where}warning: {warning.message}")
        if warning.hint:
            state.output.error(f"    hint: {warning.hint}")
    if as_json:
        state.output.json(summary)
    else:
        state.output.line(
            f"{path}: ok ({summary['services']} services, {summary['stacks']} stacks, "
            f"{summary['environments']} environments, {summary['variableGroups']} variable groups)"
        )


def _error_json(error: Any) -> dict[str, Any]:
    loc = error.location
    return {
        "file": loc.file if loc else None,
        "line": loc.line if loc else None,
        "column": loc.column if loc else None,
        "message": error.message,
        "hint": error.hint,
    }


@app.command()
def init(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A folder in the git repository.")] = Path("."),
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Take every guess; ask nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing shipline.yaml.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Write a shipline.yaml for this git repository: its services (folders with a Dockerfile,
    pom.xml, build.gradle, package.json, go.mod, mix.exs, pyproject.toml or requirements.txt),
    their stacks, ports and health paths, shared folders, and a `local` environment. Asks about
    uncertain guesses in a terminal. Example: shipline init --yes && shipline validate"""
    from shipline.engine.scaffold import init_project

    state = state_of(ctx)
    interactive = not yes and not as_json and sys.stdin.isatty()
    ask = (
        (lambda question, default: str(typer.prompt(question, default=default)))
        if interactive
        else None
    )
    written, guesses = init_project(path.resolve(), force=force, ask=ask)
    rows = [
        {"service": g.name, "folder": g.folder or ".", "stack": g.stack, "port": g.port,
         "healthPath": g.health_path, "guessed": g.unsure, "start": g.start}
        for g in guesses
    ]  # fmt: skip
    if as_json:
        state.output.json({"config": str(written), "services": rows})
        return
    state.output.table(
        f"{written}: {len(rows)} service(s)",
        ["service", "folder", "stack", "port", "health path", "starts with", "guessed"],
        [[g.name, g.folder or ".", g.stack, g.port, g.health_path,
          " ".join(g.start) if g.start else "demo workload", ", ".join(g.unsure)]
         for g in guesses],
    )  # fmt: skip
    state.output.line("next: shipline validate && shipline ci detect --base HEAD~1 --head HEAD")


@app.command()
def schema(ctx: typer.Context) -> None:
    """Print the JSON Schema of shipline.yaml (for editors).
    Example: shipline schema > shipline.schema.json"""
    from shipline.domain.models import Config

    data = Config.model_json_schema(by_alias=True)
    data["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    data["title"] = "shipline configuration"
    state_of(ctx).output.json(data)


@services_app.command("list")
def services_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List services with stack, port and health path.
    Example: shipline services list --json"""
    from shipline.cli import views

    state = state_of(ctx)
    rows = views.services(state.workspace().config)
    if as_json:
        state.output.json(rows)
        return
    state.output.table(
        f"{len(rows)} services",
        ["service", "stack", "port", "health path", "image"],
        [[r["name"], r["stack"], r["port"], r["healthPath"], r["image"]] for r in rows],
    )


@envs_app.command("list")
def envs_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List environments in ladder order with approvers and checks.
    Example: shipline envs list"""
    from shipline.cli import views

    state = state_of(ctx)
    rows = views.environments(state.workspace().config)
    if as_json:
        state.output.json(rows)
        return
    state.output.table(
        "ladder",
        [
            "#",
            "environment",
            "aliases",
            "cluster",
            "namespace",
            "tier",
            "strategy",
            "approvals",
            "checks",
        ],
        [
            [
                r["order"],
                r["name"],
                ", ".join(r["aliases"]),
                r["cluster"],
                r["namespace"],
                r["tier"],
                r["strategy"]["type"],
                views.approvals_text(r["approvals"]),
                views.checks_text(r["checks"]),
            ]
            for r in rows
        ],
    )


@vars_app.command("show")
def vars_show(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", "-e", help="Environment name or alias.")],
    service: Annotated[str | None, typer.Option("--service", help="Service name.")] = None,
    pipeline: Annotated[str, typer.Option(help="Pipeline asking (group permissions).")] = "deploy",
    reveal: Annotated[bool, typer.Option("--reveal", help="Show secret values (audited).")] = False,
    skip_secrets: Annotated[
        bool, typer.Option("--skip-secrets", help="Do not read the secret stores.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Show every resolved variable and the group it came from.
    Example: shipline vars show --env qa --service api"""
    from shipline.cli import views
    from shipline.cli.remote import acting_user
    from shipline.engine.infra import infra_outputs
    from shipline.engine.variables import find_scope, resolve

    if reveal and skip_secrets:
        raise UserError("--reveal and --skip-secrets contradict each other")
    state = state_of(ctx)
    ws = state.workspace()
    scope = find_scope(ws.config, env, service, pipeline)
    try:
        variables = resolve(
            ws.config, scope, ws.store, fetch_secrets=not skip_secrets, outputs=infra_outputs(ws)
        )
    except StoreError as exc:  # a vault out of reach: the rest can still be shown
        where = f"--env {scope.environment.name}" + (f" --service {service}" if service else "")
        also = f"or show the rest without the stores: shipline vars show {where} --skip-secrets"
        raise StoreError(exc.message, hint=f"{exc.hint}; {also}" if exc.hint else also) from None
    rows = views.variables(variables, reveal=reveal)
    if reveal:
        from shipline.engine.secret_chores import audit_reveal

        audit_reveal(
            ws,
            actor=acting_user(),
            environment=scope.environment.name,
            service=service,
            names=[v.name for v in variables if v.secret],
        )
    with state.output.unmasked() if reveal else nullcontext():
        if as_json:
            state.output.json(rows)
        else:
            title = f"{scope.environment.name}" + (f" / {service}" if service else "")
            state.output.table(
                f"variables of {title} ({len(rows)})",
                ["name", "value", "source", "secret"],
                [[r["name"], r["value"], r["source"], "yes" if r["secret"] else ""] for r in rows],
            )


def _read_secret_value(name: str) -> str:
    if sys.stdin is None:
        raise UserError("no standard input to read the secret value from")
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"value for {name} (input hidden): ")
    else:
        value = sys.stdin.read()
        if value.endswith("\n"):
            value = value[:-1]
            if value.endswith("\r"):
                value = value[:-1]
    if not value:
        raise UserError(
            f"no value given for secret '{name}'",
            hint=f'pipe it in: printf %s "$VALUE" | shipline secrets set {name}',
        )
    return value


StoreOpt = Annotated[
    str | None, typer.Option("--store", help="Secret store (default: the configured default).")
]


@secrets_app.command("set")
def secrets_set(ctx: typer.Context, name: str, store: StoreOpt = None) -> None:
    """Store a secret; the value is read from stdin, never from the command line.
    Example: shipline secrets set API-TOKEN < token.txt  (the value on stdin)"""
    from shipline.cli.remote import acting_user
    from shipline.engine.secret_chores import checked_store, set_secret

    state = state_of(ctx)
    ws = state.workspace()
    checked_store(ws, name, store)  # a bad name or store is refused before the value is read
    value = _read_secret_value(name)
    chosen = set_secret(ws, name, value, store=store, actor=acting_user())
    state.output.error(f"secret '{name}' set in store '{chosen}'")


@secrets_app.command("list")
def secrets_list(ctx: typer.Context, store: StoreOpt = None, as_json: JsonFlag = False) -> None:
    """List secret names (never values).
    Example: shipline secrets list --store local"""
    state = state_of(ctx)
    ws = state.workspace()
    names = ws.store(store).names()
    chosen = store or ws.config.default_secret_store
    if as_json:
        state.output.json({"store": chosen, "names": names})
    else:
        state.output.table(f"secrets in store '{chosen}'", ["name"], [[n] for n in names])


@secrets_app.command("rm")
def secrets_rm(ctx: typer.Context, name: str, store: StoreOpt = None) -> None:
    """Remove a secret.
    Example: shipline secrets rm API-TOKEN"""
    from shipline.cli.remote import acting_user
    from shipline.engine.secret_chores import remove_secret

    state = state_of(ctx)
    chosen = remove_secret(state.workspace(), name, store=store, actor=acting_user())
    state.output.error(f"secret '{name}' removed from store '{chosen}'")


@secrets_app.command("generate")
def secrets_generate(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", "-e", help="Environment name or alias.")],
    as_json: JsonFlag = False,
) -> None:
    """Fill every missing required secret of an environment with a random value.
    Example: shipline secrets generate --env local"""
    from shipline.cli.remote import acting_user
    from shipline.engine.secret_chores import generate_audited

    state = state_of(ctx)
    made = generate_audited(state.workspace(), env, actor=acting_user())
    if as_json:
        state.output.json([{"store": s, "name": n} for s, n in made])
    else:
        state.output.line(f"generated {len(made)} secret(s) for '{env}'")
        for store_name, key in made:
            state.output.line(f"  {store_name}: {key}")


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    head: Annotated[
        str | None,
        typer.Option("--head", help="A head printed earlier by `audit head` (SEQ:MAC)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check the audit log's MAC chain (and that it still holds an exported head); exit 1 when
    a record was changed, removed or the log was rewound.
    Example: shipline audit verify --head 42:3f1c..."""
    from shipline.domain.audit import parse_head

    state = state_of(ctx)
    try:
        exported = parse_head(head) if head is not None else None
    except ValueError as exc:
        raise UserError(f"--head {head!r}: {exc}") from None
    log = state.workspace().audit
    problems = log.verify(exported)
    count = len(log.records())
    if as_json:
        state.output.json(
            {"records": count, "intact": not problems, "problems": [p.__dict__ for p in problems]}
        )
    elif problems:
        for problem in problems:
            state.output.line(f"{log.where}: record {problem.line}: {problem.message}")
    else:
        held = f"; holds exported head {exported[0]}" if exported else ""
        state.output.line(f"{log.where}: {count} records, chain intact{held}")
    if problems:
        raise typer.Exit(1)


@audit_app.command("head")
def audit_head(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Print the newest record's number and MAC (SEQ:MAC): keep it somewhere else and check the
    log against it later with `audit verify --head SEQ:MAC`.
    Example: shipline audit head"""
    state = state_of(ctx)
    seq, mac = state.workspace().audit.head()
    if as_json:
        state.output.json({"seq": seq, "mac": mac, "head": f"{seq}:{mac}"})
    else:
        state.output.line(f"{seq}:{mac}")


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    service: Annotated[str | None, typer.Option("--service", help="Only this service.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only what this user did.")] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="From this time: an ISO date or time, UTC unless it gives its offset"
            " (2026-11-26, 2026-11-26T14:30), or a span ago (30m, 12h, 7d, 2w).",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Up to this time, as --since (a date includes that day)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Show the audit records, newest first: who started, approved, deployed and what each run
    ended as. Example: shipline audit list --env qa --service auth-service --since 2026-11-01"""
    from shipline.domain.audit import details_text, select_records
    from shipline.engine.reads import by_environment

    state = state_of(ctx)
    ws = state.workspace()
    kept = ws.audit.records()

    def listed(name: str | None) -> list[dict[str, Any]]:
        return select_records(
            kept, environment=name, service=service, actor=actor, since=since, until=until
        )

    matching = by_environment(env, listed, lambda: ws.config)[1] if env else listed(None)
    records = matching[:limit]
    if as_json:
        state.output.json(records)
        return
    more = len(matching) - len(records)
    state.output.table(
        f"{len(records)} audit records"
        + (f" ({more} older: --limit {len(matching)})" if more else ""),
        ["#", "time", "actor", "action", "details"],
        [
            [r["seq"], str(r["time"])[:19], r["actor"], r["action"], details_text(r["details"])]
            for r in records
        ],
    )


def hoist_globals(args: list[str]) -> list[str]:
    """Global options written after the command move before it (`shipline status -c x.yaml`
    means `shipline -c x.yaml status`), and `--json` written before the command moves after
    it (`shipline --json runs list`), as people type them either way."""
    front: list[str] = []
    rest: list[str] = []
    json_first = False
    seen_command = False
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest += args[index:]
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_VALUES:
            taken = [arg] if "=" in arg else args[index : index + 2]
            front += taken
            index += len(taken)
            continue
        if arg in GLOBAL_FLAGS and seen_command:
            front.append(arg)
        elif arg == "--json" and not seen_command:
            json_first = True
        else:
            if not arg.startswith("-"):
                seen_command = True
            rest.append(arg)
        index += 1
    return front + rest + (["--json"] if json_first else [])


def app_for(args: list[str]) -> typer.Typer:
    """The command tree a command line needs: the root with only the command (or group) it
    names, so that a command pays for its own parameters, not for all sixty; the whole tree
    for `--help` alone, shell completion and a name that is not a command (its error lists
    them all)."""
    index = 0
    while index < len(args) and args[index].startswith("-"):
        index += 2 if args[index] in GLOBAL_VALUES else 1
    if index >= len(args):
        return app
    name = args[index]
    trimmed = copy.copy(app)
    trimmed.registered_commands = [
        c for c in app.registered_commands
        if (c.name or typer.main.get_command_name(getattr(c.callback, "__name__", ""))) == name
    ]  # fmt: skip
    trimmed.registered_groups = [g for g in app.registered_groups if g.name == name]
    return trimmed if trimmed.registered_commands or trimmed.registered_groups else app


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code. No traceback reaches a user."""
    masker = Masker()
    output = Output(masker)
    state = State(output)
    args = hoist_globals(sys.argv[1:] if argv is None else argv)
    command = lighten(typer.main.get_command(app_for(args)))
    try:
        code = command.main(args=args, prog_name="shipline", standalone_mode=False, obj=state)
    except click.NoArgsIsHelpError as exc:
        output.line(exc.ctx.get_help() if exc.ctx else "")
        return 2
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "shipline"
        output.error(f"{where}: error: {exc.format_message()} (see '{where} --help')")
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        output.error("shipline: aborted")
        return 130
    except (KeyboardInterrupt, Exception) as exc:  # never a traceback
        return failed(output, exc)
    return code if isinstance(code, int) else 0


def run() -> None:
    """The full command as an entry point (the console script's is `shipline.cli.quick.run`,
    which tries the quick path first)."""
    leave(main())
