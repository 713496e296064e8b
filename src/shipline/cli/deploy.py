"""`shipline deploy`: start a deploy run and follow it live (or detach)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from shipline.cli.context import JsonFlag, state_of


def deploy(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", "-e", help="Environment name or alias.")],
    tag: Annotated[str, typer.Option("--tag", "-t", help="Image tag (version) to deploy.")],
    services: Annotated[str, typer.Option("--services", "-s", help="'all' or a,b,c.")] = "all",
    detach: Annotated[
        bool, typer.Option("--detach", help="Return at once (exit 3) and let the run go on.")
    ] = False,
    emergency: Annotated[
        bool,
        typer.Option("--emergency", help="Outside business hours, with the emergency approvals."),
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (required with --emergency; audited).")
    ] = None,
    parameters: Annotated[
        list[str] | None,
        typer.Option("--set", help="Run parameter NAME=VALUE (the last variable layer)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Redeploy even when the environment is in sync.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Deploy services at a tag to an environment, through its approvals and checks."""
    from shipline.cli.runs import watch_started
    from shipline.engine.identity import current_user
    from shipline.engine.submit import submit_deploy

    state = state_of(ctx)
    ws = state.workspace()
    record = submit_deploy(
        ws,
        env=env,
        services=services,
        tag=tag,
        actor=current_user(None, os.environ),
        parameters=parameters,
        emergency=emergency,
        reason=reason,
        force=force,
    )
    watch_started(state, ws, record.id, detach=detach, as_json=as_json)
