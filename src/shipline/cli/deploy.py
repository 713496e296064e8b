"""`shipline deploy`: start a deploy run and follow it live (or detach)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from shipline.cli.context import JsonFlag, state_of
from shipline.errors import UserError


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
    as_json: JsonFlag = False,
) -> None:
    """Deploy services at a tag to an environment, through its approvals and checks."""
    from shipline.cli.runs import watch
    from shipline.engine.identity import current_user
    from shipline.engine.pipelines import (
        approvers,
        deploy_pipeline,
        find_environment,
        pick_services,
    )
    from shipline.engine.service import run_service

    if emergency and not (reason and reason.strip()):
        raise UserError(
            "--emergency needs --reason TEXT",
            hint="say why, e.g. --reason 'INC-123 payment outage'",
        )
    state = state_of(ctx)
    ws = state.workspace()
    environment = find_environment(ws.config, env)
    names = pick_services(ws.config, services)
    run_parameters: dict[str, str] = {}
    for item in parameters or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--set {item!r} is not NAME=VALUE")
        run_parameters[name.strip()] = value
    spec = deploy_pipeline(ws.config, environment, names, tag, str(ws.state_dir), run_parameters)
    service = run_service(ws)
    record = service.start(
        spec,
        actor=current_user(None, os.environ),
        environment=environment.name,
        services=dict.fromkeys(names, tag),
        approvers=approvers(ws.config),
        emergency_reason=reason if emergency else None,
    )
    watch(
        state, service, record.id, detach=detach, as_json=as_json, queued=f"run {record.id} queued"
    )
