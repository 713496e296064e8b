"""`shipline server`, the people it knows (`users`, `tokens`), and `login`/`logout`/`whoami`
for a CLI that acts through a server as the signed-in person."""

import getpass
import os
import sys
from typing import Annotated

import typer

from shipline.cli.context import JsonFlag, state_of
from shipline.errors import UserError

users_app = typer.Typer(help="People who sign in to the server.", no_args_is_help=True)
tokens_app = typer.Typer(help="Personal API tokens.", no_args_is_help=True)
ADMIN_ACTOR = "local-admin"


def _secret_input(prompt: str) -> str:
    """A password from stdin (piped) or typed without echo; never from argv."""
    tty = sys.stdin.isatty()
    value = getpass.getpass(prompt) if tty else sys.stdin.readline().rstrip("\n")
    if not value:
        raise UserError("no password given", hint="pipe it on stdin or type it at the prompt")
    return value


def _local_actor() -> str:
    from shipline.cli.remote import acting_user

    return f"{ADMIN_ACTOR}:{acting_user()}"


def server(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8600,
    workers: Annotated[int, typer.Option(help="Server processes.", min=1, max=64)] = 1,
) -> None:
    """Serve the web dashboard, the REST API (/api/docs) and the inbound hooks, on the same
    state store as the workers. Put it behind TLS: its session cookies are Secure.
    Example: shipline server --host 0.0.0.0 --port 8600"""
    import uvicorn

    from shipline.engine.workspace import SERVER_CONFIG_ENV

    state = state_of(ctx)
    ws = state.workspace()
    os.environ[SERVER_CONFIG_ENV] = str(ws.config_path.resolve())
    state.output.error(f"shipline server for {ws.config.project} on http://{host}:{port}/")
    uvicorn.run(
        "shipline.server.main:app_from_environment", factory=True, host=host, port=port,
        workers=workers, log_level="warning", proxy_headers=True, timeout_graceful_shutdown=5,
    )  # fmt: skip


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    name: str,
    admin: Annotated[bool, typer.Option("--admin", help="May administer everything.")] = False,
) -> None:
    """Create a person (or change their password and admin flag); the password comes from stdin.
    Example: shipline users add quinn < password.txt"""
    from shipline.engine.assembly import accounts

    password = _secret_input(f"password for {name}: ")
    who = accounts(state_of(ctx).workspace()).add_user(
        name, password, admin=admin, actor=_local_actor()
    )
    state_of(ctx).output.error(f"user {who} saved{' (admin)' if admin else ''}")


@users_app.command("list")
def users_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the people the server knows.
    Example: shipline users list --json"""
    from shipline.engine.assembly import accounts

    rows = accounts(state_of(ctx).workspace()).users()
    output = state_of(ctx).output
    if as_json:
        output.json(rows)
        return
    output.table(
        f"{len(rows)} users", ["name", "admin", "disabled", "source", "created"],
        [[r["name"], r["admin"], r["disabled"], r["source"], str(r["created_at"])[:19]]
         for r in rows],
    )  # fmt: skip


@users_app.command("disable")
def users_disable(ctx: typer.Context, name: str) -> None:
    """Disable a person: their sessions end and their tokens stop working at once.
    Example: shipline users disable quinn"""
    from shipline.engine.assembly import accounts

    accounts(state_of(ctx).workspace()).disable_user(name, actor=_local_actor())
    state_of(ctx).output.error(f"user {name} disabled")


ScopesOpt = Annotated[
    str, typer.Option("--scopes", help="view, deploy, approve, admin (comma-separated).")
]


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", help="Whose token.")],
    label: Annotated[str, typer.Option("--label", help="What it is for.")],
    scopes: ScopesOpt = "view",
    days: Annotated[int, typer.Option(help="Days until it expires.")] = 90,
) -> None:
    """Create a personal token for a person (printed once, kept only as a digest).
    Example: shipline tokens create --user ci-bot --label pipeline --scopes view,deploy"""
    from shipline.engine.accounts import person
    from shipline.engine.assembly import accounts

    chosen = [s.strip() for s in scopes.split(",") if s.strip()]
    token_id, token = accounts(state_of(ctx).workspace()).create_token(
        person(user), label, chosen, days, actor=_local_actor()
    )
    state_of(ctx).output.error(f"token {token_id} for {user}; it is shown this once:")
    state_of(ctx).output.stdout.enabled = False  # the one place a credential is shown
    state_of(ctx).output.line(token)
    state_of(ctx).output.stdout.enabled = True


@tokens_app.command("list")
def tokens_list(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", help="Only this person's.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List tokens (never their values).
    Example: shipline tokens list --user quinn"""
    from shipline.engine.assembly import accounts

    rows = accounts(state_of(ctx).workspace()).tokens(user)
    output = state_of(ctx).output
    if as_json:
        output.json(rows)
        return
    output.table(
        f"{len(rows)} tokens", ["id", "user", "label", "scopes", "expires", "revoked"],
        [[r["id"], r["user_name"], r["label"], ",".join(r["scopes"]),
          str(r["expires_at"])[:19], str(r["revoked_at"] or "")[:19]] for r in rows],
    )  # fmt: skip


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context, token_id: int) -> None:
    """Revoke a token: the next request with it is refused.
    Example: shipline tokens revoke 4"""
    from shipline.engine.assembly import accounts

    accounts(state_of(ctx).workspace()).revoke_token(token_id, actor=_local_actor(), owner=None)
    state_of(ctx).output.error(f"token {token_id} revoked")


def login(
    ctx: typer.Context,
    server_url: Annotated[str, typer.Option("--server", help="The server's address.")],
    user: Annotated[str, typer.Option("--user", help="Your name on the server.")],
) -> None:
    """Sign in to a server: the CLI then acts as you (approve, reject, cancel go through it and
    `--as` is refused). The password comes from stdin or a prompt; a token is stored 0600.
    Example: shipline login --server https://shipline.example.com --user quinn"""
    from shipline.cli.remote import sign_in

    password = _secret_input(f"password for {user} on {server_url}: ")
    who = sign_in(server_url, user, password)
    state_of(ctx).output.error(f"signed in to {server_url} as {who}")


def logout(ctx: typer.Context) -> None:
    """Forget the stored sign-in (the token is revoked on the server first).
    Example: shipline logout"""
    from shipline.cli.remote import sign_out

    state_of(ctx).output.error(sign_out())


def whoami(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Who the CLI acts as: the signed-in person on a server, or the local user.
    Example: shipline whoami"""
    from shipline.cli.remote import current

    remote = current()
    output = state_of(ctx).output
    if remote is None:
        from shipline.cli.remote import acting_user

        data = {"mode": "single-user", "name": acting_user()}
    else:
        data = {"mode": "server", **remote.get("/api/v1/me"), "server": remote.url}
    if as_json:
        output.json(data)
    else:
        output.line(f"{data['name']} ({data['mode']}{' ' + remote.url if remote else ''})")
