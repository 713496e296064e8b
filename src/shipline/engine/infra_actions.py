"""Infrastructure step actions, through the `InfraTool` port: plan (saved, sealed, summarised),
apply exactly the approved plan, record outputs, release a dead run's state lock.

A saved plan holds variable values, secrets included: it is written in a private temporary
folder, kept only encrypted with the project's key, and decrypted again only for the apply.
The configuration's fingerprint (every file of the root module and its variable files) is taken
with the plan; an apply after the configuration changed is refused, as Terraform refuses a plan
whose state moved. Neither is ever silently planned again.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shipline.domain.infra import PlanSummary, summarize_plan, version_allows
from shipline.domain.models import InfraBackend
from shipline.domain.ports import InfraTool, InfraWork
from shipline.domain.variables import REFERENCE
from shipline.engine.actions import BUILTIN, StepContext
from shipline.engine.runtime import current
from shipline.engine.variables import resolve_groups
from shipline.engine.wiring import infra_tool, seal, unseal
from shipline.errors import (
    CheckFailed,
    PermissionDenied,
    ShiplineError,
    StalePlan,
    StateLocked,
    UserError,
)

TF_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_TOOLS: dict[str, InfraTool] = {}
_TOOLS_LOCK = threading.Lock()


def _tool(kind: str) -> InfraTool:
    with _TOOLS_LOCK:
        if kind not in _TOOLS:
            _TOOLS[kind] = infra_tool(kind)
        return _TOOLS[kind]


def _workspace() -> Any:
    ws = current().workspace
    if ws is None:
        raise UserError("infrastructure runs need a worker started for the project")
    return ws


def _fill(text: str, stack: str, environment: str) -> str:
    return text.replace("{environment}", environment).replace("{stack}", stack)


def infra_work(ws: Any, stack_name: str, environment: str) -> InfraWork:
    """What the tool needs for (stack, environment): the root, its own data folder, the
    backend (the embedded default: a local state file under .shipline/infra/), the variable
    files that exist, and TF_VAR_* values from the stack's and environment's variable groups."""
    config = ws.config
    infra = config.infrastructure
    stack = infra.stacks[stack_name]
    env = infra.environment(environment)
    groups = [*stack.variable_groups, *env.variable_groups]
    for name in groups:
        allowed = config.variable_groups[name].pipelines
        if allowed is not None and "terraform" not in allowed:
            raise PermissionDenied(
                f"pipeline 'terraform' may not use variable group '{name}'",
                hint="add terraform to the group's 'pipelines' to grant it",
            )
    variables = resolve_groups(config, groups, ws.store, f"infrastructure {environment}")
    by_name = {v.name.casefold(): v for v in variables}
    root = (Path(ws.root) / stack.root).resolve()
    home = Path(ws.state_dir) / "infra" / stack_name / environment
    backend: InfraBackend = env.backend or stack.backend

    def expand(key: str, text: str, *, secret_ok: bool) -> str:
        def one(match: re.Match[str]) -> str:
            found = by_name.get(match[1].casefold())
            if found is None or found.value is None:
                return match[0]
            if found.secret and not secret_ok:
                raise UserError(
                    f"backend setting '{key}' takes the secret '{found.name}': Terraform would"
                    " save it in its working data",
                    hint="pass it in the backend's 'env' instead (PG_CONN_STR, ARM_ACCESS_KEY)",
                )
            return str(found.value)

        return REFERENCE.sub(one, _fill(text, stack_name, environment))

    settings = {k: expand(k, v, secret_ok=False) for k, v in backend.config.items()}
    env_vars = {k: expand(k, v, secret_ok=True) for k, v in backend.env.items()}
    if backend.type == "local":
        settings.setdefault("path", str(home / "terraform.tfstate"))
    if backend.type == "pg":
        schema = f"terraform_{stack_name}_{environment}".replace("-", "_")
        settings.setdefault("schema_name", schema)
        url = str(ws.database_url)
        if (
            "PG_CONN_STR" not in env_vars
            and "conn_str" not in settings
            and url.startswith("postgres")
        ):
            env_vars["PG_CONN_STR"] = pg_conn_str(url)
    for variable in variables:
        if variable.value is not None and TF_NAME.match(variable.name):
            env_vars[f"TF_VAR_{variable.name}"] = str(variable.value)
    var_files = tuple(
        path for path in (root / _fill(f, stack_name, environment) for f in stack.var_files)
        if path.is_file()
    )  # fmt: skip
    return InfraWork(
        root=root,
        data_dir=home / "data",
        backend=backend.type,
        backend_config=settings,
        var_files=var_files,
        env=env_vars,
        lock_timeout_seconds=infra.lock_timeout_seconds,
    )


def pg_conn_str(url: str) -> str:
    """shipline's PostgreSQL URL as Terraform's pg backend (lib/pq) takes it."""
    plain = re.sub(r"^postgresql(\+\w+)?://", "postgres://", url)
    return (
        plain if "sslmode=" in plain else plain + ("&" if "?" in plain else "?") + "sslmode=disable"
    )


def fingerprint(work: InfraWork) -> str:
    """SHA-256 over the root module's files (its modules too) and the variable files."""
    digest = hashlib.sha256()
    files = [
        p
        for p in sorted(work.root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(work.root).parts)
    ]
    for path in [*files, *work.var_files]:
        digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _folder(ctx: StepContext, params: dict[str, Any]) -> Path:
    folder = (
        Path(str(params["stateDir"])) / "artifacts" / f"run-{ctx.run_id}" / "infra"
        / str(params["environment"]) / str(params["stack"])
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def _check_version(ws: Any, tool: InfraTool) -> None:
    wanted = ws.config.infrastructure.terraform_version
    if wanted:
        have = tool.version()
        if not version_allows(have, wanted):
            raise CheckFailed(
                f"terraform {have} does not meet the required version '{wanted}'",
                hint="install a matching Terraform on the worker, or change terraformVersion",
            )


@contextmanager
def _told(stack: str, environment: str) -> Iterator[None]:
    """A held state lock, said with the command that releases it for this environment."""
    try:
        yield
    except StateLocked as exc:
        held = exc.lock_id or "ID"
        raise StateLocked(
            f"the state of {stack} in {environment} is locked by another operation"
            + (f" (lock {exc.lock_id})" if exc.lock_id else ""),
            lock_id=exc.lock_id,
            hint="wait for it to finish; if it died holding the lock: shipline infra unlock"
            f" --env {environment} --stack {stack} --lock-id {held}",
        ) from None


def _log_summary(ctx: StepContext, summary: PlanSummary) -> None:
    ctx.log(summary.line() + ("" if not summary.empty else " (nothing to change)"))
    for action, addresses in (("+", summary.add), ("~", summary.change),
                              ("-/+", summary.replace), ("-", summary.destroy)):  # fmt: skip
        for address in addresses:
            ctx.log(f"  {action} {address}")


def run_plan(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """init → validate → plan, saved sealed; outputs the summary approvers see."""
    ws = _workspace()
    stack, environment = str(params["stack"]), str(params["environment"])
    tool = _tool(ws.config.infrastructure.tool)
    _check_version(ws, tool)
    work = infra_work(ws, stack, environment)
    folder = _folder(ctx, params)
    with tempfile.TemporaryDirectory(prefix="shipline-plan-") as private:
        out = Path(private) / "plan.tfplan"
        with _told(stack, environment):
            doc = tool.plan(work, out, destroy=bool(params.get("destroy")), log=ctx.log)
        sealed = seal(out.read_bytes(), Path(ws.state_dir))
    saved = folder / "plan.sealed"
    saved.write_bytes(sealed)
    saved.chmod(0o600)
    summary = summarize_plan(doc)
    (folder / "plan-summary.json").write_text(json.dumps(summary.to_json(), indent=2))
    _log_summary(ctx, summary)
    return {f"plan.{stack}": {
        **summary.to_json(), "destroying": bool(params.get("destroy")), "file": str(saved),
        "sha256": hashlib.sha256(sealed).hexdigest(), "fingerprint": fingerprint(work),
    }}  # fmt: skip


def run_apply(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Apply exactly the plan the plan stage saved (and the approvers approved)."""
    ws = _workspace()
    stack, environment = str(params["stack"]), str(params["environment"])
    planned = ctx.inputs.get(f"{environment}:plan", {}).get(f"plan.{stack}")
    if not planned:
        raise CheckFailed(f"no saved plan of {stack} in {environment}: plan first")
    work = infra_work(ws, stack, environment)
    if fingerprint(work) != planned["fingerprint"]:
        raise StalePlan(
            f"the approved plan of {stack} in {environment} is stale: the configuration changed"
            " after it was made",
            hint="nothing was applied; plan again and approve the new plan",
        )
    sealed = Path(str(planned["file"])).read_bytes()
    if hashlib.sha256(sealed).hexdigest() != planned["sha256"]:
        raise StalePlan("the saved plan is not the one that was approved", hint="plan again")
    tool = _tool(ws.config.infrastructure.tool)
    started = Path(str(planned["file"])).with_suffix(".started")
    replayed = started.exists()  # an apply began before a restart
    started.touch()
    with tempfile.TemporaryDirectory(prefix="shipline-plan-") as private:
        plan = Path(private) / "plan.tfplan"
        plan.write_bytes(unseal(sealed, Path(ws.state_dir)))
        try:
            with _told(stack, environment):
                tool.apply(work, plan, log=ctx.log)
        except StalePlan:
            if not (replayed and _already_applied(ctx, tool, work, planned)):
                raise
            ctx.log("the state already is what the approved plan makes (applied before a restart)")
    return {f"applied.{stack}": True}


def _already_applied(
    ctx: StepContext, tool: InfraTool, work: InfraWork, planned: dict[str, Any]
) -> bool:
    with tempfile.TemporaryDirectory(prefix="shipline-plan-") as private:
        try:
            check = Path(private) / "check.tfplan"
            destroy = bool(planned.get("destroying"))
            doc = tool.plan(work, check, destroy=destroy, log=lambda line: None)
        except ShiplineError:
            return False
    return summarize_plan(doc).empty


def run_outputs(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Record the state's outputs (sensitive ones without their value) and show the spec's
    KEY OUTPUTS block."""
    ws = _workspace()
    stack, environment = str(params["stack"]), str(params["environment"])
    work = infra_work(ws, stack, environment)
    found = _tool(ws.config.infrastructure.tool).outputs(work, log=ctx.log)
    kept = {
        name: {"value": None if sensitive else value, "sensitive": sensitive}
        for name, (value, sensitive) in sorted(found.items())
    }
    current().store.record_infra_outputs(stack, environment, ctx.run_id, kept)
    ctx.log("KEY OUTPUTS")
    shown: dict[str, Any] = {}
    for name, entry in kept.items():
        value = "(sensitive)" if entry["sensitive"] else entry["value"]
        shown[name] = value
        ctx.log(f"  {name} = {value if isinstance(value, str) else json.dumps(value)}")
    return {f"outputs.{stack}": shown}


def run_unlock(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Release the state lock `lockId`."""
    ws = _workspace()
    stack, environment = str(params["stack"]), str(params["environment"])
    work = infra_work(ws, stack, environment)
    _tool(ws.config.infrastructure.tool).unlock(work, str(params["lockId"]), log=ctx.log)
    ctx.log(f"lock {params['lockId']} released")
    return {f"unlocked.{stack}": str(params["lockId"])}


BUILTIN.update(
    {
        "infra.plan": run_plan,
        "infra.apply": run_apply,
        "infra.outputs": run_outputs,
        "infra.unlock": run_unlock,
    }
)
