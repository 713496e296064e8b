"""`shipline infra plan | apply | destroy | promote | unlock | outputs`: Terraform runs on the same
engine as deploys (plan → approve that plan → apply), each a durable run."""

from typing import Annotated

import typer

from shipline.cli.context import JsonFlag, state_of

infra_app = typer.Typer(
    help="Infrastructure runs: Terraform plan, approved apply, guarded destroy, promotion.",
    no_args_is_help=True,
)

EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Infrastructure environment.")]
StackOpt = Annotated[
    str | None, typer.Option("--stack", help="Stack(s): a name, a,b or all (default: all).")
]
DetachOpt = Annotated[
    bool, typer.Option("--detach", help="Return at once (exit 3) and let the run go on.")
]


def _start(ctx: typer.Context, action: str, detach: bool, as_json: bool, **given: object) -> None:
    from shipline.cli.remote import acting_user
    from shipline.cli.runs import watch_started
    from shipline.engine.infra import submit_infra

    state = state_of(ctx)
    ws = state.workspace()
    record = submit_infra(
        ws,
        action=action,
        actor=acting_user(),
        **given,  # type: ignore[arg-type]
    )
    watch_started(state, ws, record.id, detach=detach, as_json=as_json)


@infra_app.command("plan")
def plan(
    ctx: typer.Context,
    env: EnvOpt,
    stack: StackOpt = None,
    detach: DetachOpt = False,
    as_json: JsonFlag = False,
) -> None:
    """Plan only: init, validate and a saved plan whose changes the run shows.
    Example: shipline infra plan --env dev"""
    _start(ctx, "plan", detach, as_json, env=env, stack=stack)


@infra_app.command("apply")
def apply(
    ctx: typer.Context,
    env: EnvOpt,
    stack: StackOpt = None,
    auto_approve: Annotated[
        bool,
        typer.Option("--auto-approve", help="No approval (only where 'autoApprove' allows it)."),
    ] = False,
    detach: DetachOpt = False,
    as_json: JsonFlag = False,
) -> None:
    """Plan, wait for the environment's approvers to approve that plan, apply exactly it, and
    record the outputs. Example: shipline infra apply --env staging"""
    _start(ctx, "apply", detach, as_json, env=env, stack=stack, auto_approve=auto_approve)


@infra_app.command("destroy")
def destroy(
    ctx: typer.Context,
    env: EnvOpt,
    destroy_confirm: Annotated[
        str | None,
        typer.Option("--destroy-confirm", help="The environment's name again, to confirm."),
    ] = None,
    stack: StackOpt = None,
    detach: DetachOpt = False,
    as_json: JsonFlag = False,
) -> None:
    """Plan a destroy and apply it after the destroy approvers approve it; refused without
    --destroy-confirm naming the environment, and for a protected environment.
    Example: shipline infra destroy --env dev --destroy-confirm dev"""
    _start(ctx, "destroy", detach, as_json, env=env, stack=stack, destroy_confirm=destroy_confirm)


@infra_app.command("promote")
def promote(
    ctx: typer.Context,
    start: Annotated[str, typer.Option("--start", help="The first environment.")],
    stop: Annotated[str, typer.Option("--stop", help="The last environment.")],
    stack: StackOpt = None,
    detach: DetachOpt = False,
    as_json: JsonFlag = False,
) -> None:
    """Plan and apply environment after environment in order, through each one's approvals,
    stopping at the first failure. Example: shipline infra promote --start dev --stop prod"""
    from shipline.cli.remote import acting_user
    from shipline.cli.runs import watch_started
    from shipline.engine.infra import submit_infra_promotion

    state = state_of(ctx)
    ws = state.workspace()
    record = submit_infra_promotion(ws, start=start, stop=stop, stack=stack, actor=acting_user())
    watch_started(state, ws, record.id, detach=detach, as_json=as_json)


@infra_app.command("unlock")
def unlock(
    ctx: typer.Context,
    env: EnvOpt,
    lock_id: Annotated[str, typer.Option("--lock-id", help="The id the lock error named.")],
    stack: StackOpt = None,
    detach: DetachOpt = False,
    as_json: JsonFlag = False,
) -> None:
    """Release a state lock that a dead operation left (terraform force-unlock), after the
    environment's approvals. Example: shipline infra unlock --env qa --lock-id 8d2c..."""
    from shipline.cli.remote import acting_user
    from shipline.cli.runs import watch_started
    from shipline.engine.infra import submit_unlock

    state = state_of(ctx)
    ws = state.workspace()
    record = submit_unlock(ws, env=env, lock_id=lock_id, stack=stack, actor=acting_user())
    watch_started(state, ws, record.id, detach=detach, as_json=as_json)


@infra_app.command("outputs")
def outputs(
    ctx: typer.Context,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The outputs the last apply of each stack recorded, per environment (the spec's KEY
    OUTPUTS); sensitive outputs are not kept. Example: shipline infra outputs --env dev"""
    import json

    from shipline.engine.infra import outputs_table

    state = state_of(ctx)
    rows = outputs_table(state.workspace(), env)
    if as_json:
        state.output.json(rows)
        return
    state.output.table(
        f"infrastructure outputs ({len(rows)})",
        ["environment", "stack", "name", "value", "run"],
        [
            [
                r["environment"],
                r["stack"],
                r["name"],
                "(sensitive)"
                if r["sensitive"]
                else r["value"]
                if isinstance(r["value"], str)
                else json.dumps(r["value"]),
                r["run"],
            ]
            for r in rows
        ],
    )
