"""Infrastructure runs (the spec's terraform-cd and terraform-promote): plan → approve that exact
plan → apply it → record the outputs, per environment and stack, as durable runs on the same
engine as the application deploys. Every rule is checked here, before anything is queued:
`--auto-approve` only where the configuration allows it, destroy only with `--destroy-confirm`
naming the environment and never for a protected one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipline.domain.infra import InfraRefused, destroy_refusal, infra_path
from shipline.domain.models import ApprovalPolicy, InfraEnvironment, Infrastructure
from shipline.domain.pipeline import PipelineSpec
from shipline.engine.assembly import run_service
from shipline.engine.pipelines import approvers
from shipline.engine.variables import Outputs
from shipline.engine.wiring import RunRecord, SqlStateStore
from shipline.engine.workspace import Workspace
from shipline.errors import NotFoundError, UserError


def _infra(ws: Workspace) -> Infrastructure:
    infra = ws.config.infrastructure
    if not infra.stacks or not infra.environments:
        raise UserError(
            "no infrastructure is configured",
            hint="add 'infrastructure: {stacks: ..., environments: ...}' to shipline.yaml",
        )
    return infra


def _environment(infra: Infrastructure, name: str) -> InfraEnvironment:
    try:
        return infra.environment(name)
    except KeyError:
        known = ", ".join(env.name for env in infra.environments)
        raise NotFoundError(
            f"unknown infrastructure environment '{name}'", hint=f"known: {known}"
        ) from None


def _stacks(infra: Infrastructure, stack: str | None) -> list[str]:
    if stack is None or stack == "all":
        return list(infra.stacks)
    chosen = [s.strip() for s in stack.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in infra.stacks]
    if unknown or not chosen:
        raise NotFoundError(
            f"unknown infrastructure stack(s): {', '.join(unknown) or '(none given)'}",
            hint=f"known: {', '.join(infra.stacks)}",
        )
    return chosen


def _environment_stages(
    ws: Workspace,
    env: InfraEnvironment,
    stacks: list[str],
    *,
    apply: bool,
    destroy: bool,
    gate: ApprovalPolicy | None,
    after: list[str],
) -> list[dict[str, Any]]:
    """`ENV:plan` (init, validate, plan saved) and, to apply, `ENV:apply` (the approval of that
    plan, then apply and outputs per stack) under one lock per (stack, environment)."""

    def params(stack: str) -> dict[str, Any]:
        return {"stack": stack, "environment": env.name, "destroy": destroy,
                "stateDir": str(ws.state_dir), "root": str(ws.root)}  # fmt: skip

    plan = {
        "name": f"{env.name}:plan",
        "dependsOn": after,
        "steps": [
            {"name": stack, "action": "infra.plan", "params": params(stack)} for stack in stacks
        ],
    }
    if not apply:
        return [plan]
    steps: list[dict[str, Any]] = []
    for stack in stacks:
        steps.append({"name": f"apply {stack}", "action": "infra.apply", "params": params(stack)})
        steps.append(
            {"name": f"outputs {stack}", "action": "infra.outputs", "params": params(stack)}
        )
    stage: dict[str, Any] = {
        "name": f"{env.name}:apply",
        "locks": [f"infra:{stack}/{env.name}" for stack in stacks],
        "steps": steps,
    }
    if gate is not None:
        stage["approval"] = gate.model_dump(mode="json")
    return [plan, stage]


def submit_infra(
    ws: Workspace,
    *,
    action: str,
    env: str,
    actor: str,
    stack: str | None = None,
    auto_approve: bool = False,
    destroy_confirm: str | None = None,
) -> RunRecord:
    """Queue `infra plan|apply|destroy` for one environment after its rules held."""
    infra = _infra(ws)
    environment = _environment(infra, env)
    stacks = _stacks(infra, stack)
    if action not in ("plan", "apply", "destroy"):
        raise UserError(f"unknown infrastructure action '{action}'", hint="plan, apply or destroy")
    if auto_approve and action != "apply":
        raise UserError(f"--auto-approve applies to apply, not to {action}")
    if auto_approve and not environment.auto_approve:
        raise UserError(
            f"--auto-approve is not allowed for {environment.name}: its plans are approved by"
            " people",
            hint=f"drop --auto-approve, or set 'autoApprove: true' on {environment.name}",
        )
    if destroy_confirm is not None and action != "destroy":
        raise UserError("--destroy-confirm only goes with destroy")
    gate = None if auto_approve else environment.approvals
    if action == "destroy":
        refused = destroy_refusal(infra, environment.name, destroy_confirm)
        if refused:
            raise UserError(refused, hint="a destroy names its environment twice, on purpose")
        gate = environment.destroy_approvals or environment.approvals
    stages = _environment_stages(
        ws, environment, stacks, apply=action != "plan", destroy=action == "destroy", gate=gate,
        after=[],
    )  # fmt: skip
    spec = PipelineSpec.model_validate({"kind": f"infra-{action}", "stages": stages})
    return run_service(ws).start(
        spec,
        actor=actor,
        environment=environment.name,
        params={"stacks": stacks, "action": action, "autoApprove": auto_approve},
        approvers=approvers(ws.config),
    )


def submit_infra_promotion(
    ws: Workspace, *, start: str, stop: str, actor: str, stack: str | None = None
) -> RunRecord:
    """Queue `infra promote`: plan and apply each environment from `start` to `stop` in order,
    through each one's approvals, stopping at the first failure."""
    infra = _infra(ws)
    try:
        path = infra_path(infra, start, stop)
    except InfraRefused as exc:
        raise UserError(str(exc)) from None
    stacks = _stacks(infra, stack)
    stages: list[dict[str, Any]] = []
    after: list[str] = []
    for name in path:
        environment = infra.environment(name)
        found = _environment_stages(
            ws, environment, stacks, apply=True, destroy=False, gate=environment.approvals,
            after=after,
        )  # fmt: skip
        stages += found
        after = [found[-1]["name"]]
    spec = PipelineSpec.model_validate({"kind": "infra-promote", "stages": stages})
    return run_service(ws).start(
        spec,
        actor=actor,
        environment=path[-1],
        params={"stacks": stacks, "action": "promote", "environments": path},
        approvers=approvers(ws.config),
    )


def submit_unlock(
    ws: Workspace, *, env: str, lock_id: str, actor: str, stack: str | None = None
) -> RunRecord:
    """Queue `infra unlock`: release a state lock a dead operation left, after the
    environment's approvals (a forced unlock can break a run that is still alive)."""
    infra = _infra(ws)
    environment = _environment(infra, env)
    stacks = _stacks(infra, stack)
    if len(stacks) != 1:
        raise UserError("name the stack whose lock to release: --stack S")
    if not lock_id.strip() or len(lock_id) > 200 or any(c.isspace() for c in lock_id):
        raise UserError(f"--lock-id {lock_id!r} is not a lock id", hint="copy it from the error")
    stage: dict[str, Any] = {
        "name": f"{environment.name}:unlock",
        "steps": [{"name": stacks[0], "action": "infra.unlock", "params": {
            "stack": stacks[0], "environment": environment.name, "lockId": lock_id,
            "stateDir": str(ws.state_dir), "root": str(ws.root)}}],
    }  # fmt: skip
    policy = environment.destroy_approvals or environment.approvals
    if policy is not None:
        stage["approval"] = policy.model_dump(mode="json")
    spec = PipelineSpec.model_validate({"kind": "infra-unlock", "stages": [stage]})
    return run_service(ws).start(
        spec, actor=actor, environment=environment.name,
        params={"stacks": stacks, "action": "unlock"}, approvers=approvers(ws.config),
    )  # fmt: skip


def infra_outputs(ws: Workspace) -> Outputs:
    """A reader of recorded outputs for variable resolution outside the worker."""
    cache: dict[tuple[str, str], Mapping[str, Any] | None] = {}

    def read(stack: str, environment: str) -> Mapping[str, Any] | None:
        if (stack, environment) not in cache:
            store = SqlStateStore.connect(ws.database_url)
            try:
                cache[(stack, environment)] = store.infra_outputs(stack, environment)
            finally:
                store.close()
        return cache[(stack, environment)]

    return read


def outputs_table(ws: Workspace, env: str | None = None) -> list[dict[str, Any]]:
    """Every recorded output, per stack and environment (sensitive ones without their value)."""
    infra = ws.config.infrastructure
    read = infra_outputs(ws)
    rows: list[dict[str, Any]] = []
    for environment in infra.environments:
        if env is not None and environment.name != env:
            continue
        for stack in infra.stacks:
            record = read(stack, environment.name)
            for name, entry in sorted(((record or {}).get("outputs") or {}).items()):
                rows.append({
                    "stack": stack, "environment": environment.name, "name": name,
                    "value": None if entry.get("sensitive") else entry.get("value"),
                    "sensitive": bool(entry.get("sensitive")),
                    "run": record["run_id"] if record else None,
                })  # fmt: skip
    return rows
