"""Starting deploy-family runs: every rule checked at submission, in one place the CLI and a web
API share (tags, run parameters, the target, revisions, scale bounds, emergencies).

Bad input is refused here with a UserError (exit 2) before anything is queued or approved.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
from pathlib import Path
from typing import Any

from shipline.domain.checks import emergency_problem
from shipline.domain.models import Config, Environment
from shipline.domain.pipeline import Phase
from shipline.domain.tags import OCI_TAG
from shipline.engine.assembly import run_service
from shipline.engine.pipelines import (
    action_pipeline,
    approvers,
    deploy_pipeline,
    down_pipeline,
    find_environment,
    pick_services,
)
from shipline.engine.runs import RunService
from shipline.engine.wiring import RunRecord, require_target
from shipline.engine.workspace import Workspace
from shipline.errors import ShiplineError, UserError

VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
# What the target controls in a workload's environment; a run parameter may not replace it.
RESERVED = re.compile(r"^(PATH|PYTHONPATH|PYTHONHOME|PORT|HOME|LD_.*)$", re.IGNORECASE)


def check_tag(tag: str) -> str:
    """An image tag by the OCI reference grammar (it becomes a path, a label, an argument)."""
    if not OCI_TAG.match(tag):
        raise UserError(
            f"--tag {tag!r} is not a valid image tag",
            hint="letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-'",
        )
    return tag


def emergency_reason(
    environments: list[Environment], emergency: bool, reason: str | None
) -> str | None:
    """The run's emergency reason (None: no emergency), after the rules held: a reason is
    given, and one of the run's environments has business hours an emergency may override."""
    if not emergency:
        return None
    if not (reason and reason.strip()):
        raise UserError(
            "--emergency needs --reason TEXT",
            hint="say why, e.g. --reason 'INC-123 payment outage'",
        )
    problem = emergency_problem(environments)
    if problem is not None:
        raise UserError(f"--emergency: {problem}", hint="leave out --emergency")
    return reason


def parse_parameters(items: list[str]) -> dict[str, str]:
    """`NAME=VALUE` run parameters; names are variable names, never a reserved one."""
    found: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not VARIABLE_NAME.match(name):
            raise UserError(
                f"--set {item.split('=', 1)[0]!r}=… is not NAME=VALUE with a variable name",
                hint="names: letters, digits, '_', '.', '-', starting with a letter or '_'",
            )
        from shipline.engine.deploy_actions import env_name

        if RESERVED.match(env_name(name)):
            raise UserError(
                f"--set {name} is reserved: the target sets it",
                hint="PATH, PYTHONPATH, PYTHONHOME, LD_*, PORT and HOME cannot be overridden",
            )
        found[name] = value
    return found


def as_references(
    ws: Workspace, environment: str, services: list[str], parameters: dict[str, str]
) -> dict[str, str]:
    """`parameters` with every secret value in them replaced by its `$(variable)` reference:
    what a run keeps is then safe to store, and resolves to the same value at deploy time."""
    if not parameters:
        return parameters
    from shipline.engine.variables import find_scope, resolve

    known: dict[str, str] = {}  # secret value -> variable name
    for service in services:
        scope = find_scope(ws.config, environment, service, "deploy")
        try:
            resolved = resolve(ws.config, scope, ws.store)
        except ShiplineError:
            continue  # a secret that is missing fails the deploy itself, with its own message
        for variable in resolved:
            if variable.secret and variable.value:
                known.setdefault(str(variable.value), variable.name)
    out: dict[str, str] = {}
    for name, value in parameters.items():
        kept = value
        for secret in sorted(known, key=len, reverse=True):
            kept = kept.replace(secret, f"$({known[secret]})")
        out[name] = kept
    return out


def _revisions(ws: Workspace, env: Environment, service: str) -> list[int]:
    """The revisions the target recorded for `service` (read from what the worker wrote)."""
    from shipline.engine.history import read_history

    return [r.number for r in read_history(ws, env, service)]


def chosen_services(environment: Environment, services: str | None) -> str:
    """The services a deploy names; an environment marked protected has no default."""
    if services is None:
        if environment.protected:
            raise UserError(
                f"{environment.name} is protected: name the services to deploy",
                hint="--services a,b (or --services all, on purpose)",
            )
        return "all"
    return services


def submit_deploy(
    ws: Workspace,
    *,
    env: str,
    services: str | None,
    tag: str | None,
    actor: str,
    parameters: list[str] | None = None,
    emergency: bool = False,
    reason: str | None = None,
    force: bool = False,
    release: str | None = None,
    skip_tests: bool = False,
    service: RunService | None = None,
) -> RunRecord:
    """Queue a deploy run after every submission rule held: one tag for every service, or each
    service's version from an immutable release. `service`: the runs of `ws`'s project, as the
    caller keeps them (a worker's front desk), else opened here."""
    if (tag is None) == (release is None):
        raise UserError("give --tag TAG or --release NAME (one of them)")
    environment = find_environment(ws.config, env)
    why = emergency_reason([environment], emergency, reason)
    kind = require_target(ws.config, environment.name)
    names = pick_services(ws.config, chosen_services(environment, services))
    versions: str | dict[str, str]
    digests: dict[str, str] = {}
    if release is not None:
        from shipline.engine.promotion import release_versions

        versions, digests = release_versions(ws, release, names, {kind})
    else:
        assert tag is not None
        versions = check_tag(tag)
    ws.check_target(environment.name)
    run_parameters = as_references(ws, environment.name, names, parse_parameters(parameters or []))
    spec = deploy_pipeline(
        ws.config,
        environment,
        names,
        versions,
        str(ws.state_dir),
        run_parameters,
        root=str(ws.root),
        force=force,
        digests=digests,
        tests=not skip_tests,
    )
    return (service or run_service(ws)).start(
        spec,
        actor=actor,
        environment=environment.name,
        services=versions if isinstance(versions, dict) else dict.fromkeys(names, versions),
        params={"release": release} if release else None,
        approvers=approvers(ws.config),
        emergency_reason=why,
    )


def _bounds(config: Config, env: Environment) -> tuple[int, int]:
    tier = config.tiers[env.tier].resources
    return tier.min_replicas or 1, tier.max_replicas


def submit_action(
    ws: Workspace,
    *,
    env: str,
    services: str | None,
    action: str,
    actor: str,
    override: str | None = None,
    service: RunService | None = None,
    **extra: Any,
) -> RunRecord:
    """Queue a rollback, restart, scale, preview or down run after its rules held. `service`:
    as for `submit_deploy`."""
    environment = find_environment(ws.config, env)
    require_target(ws.config, environment.name)
    ws.check_target(environment.name)
    names = [] if action == "down" else pick_services(ws.config, services or "all")
    if "parameters" in extra:  # a preview sees the run parameters a deploy would get
        given = parse_parameters(list(extra.pop("parameters")))
        extra["runParameters"] = as_references(ws, environment.name, names, given)
    if "version" in extra:
        check_tag(str(extra["version"]))
    if action == "rollback":
        revision = int(extra.get("revision", 0))
        if revision < 0:
            raise UserError("--revision is 0 (the previous) or a revision number")
        for name in names:
            known = _revisions(ws, environment, name)
            if not known:
                raise UserError(
                    f"{name} has no revisions in {environment.name}: nothing to roll back",
                    hint=f"deploy it first: shipline deploy --env {environment.name}"
                    f" --services {name} --tag TAG",
                )
            wanted = (len(known) - 1) if revision == 0 else revision
            if wanted not in known:
                raise UserError(
                    f"{name} in {environment.name} has no revision {wanted}"
                    + (" to roll back to" if revision == 0 else ""),
                    hint=f"see `shipline history --env {environment.name} --service {name}`",
                )
    if action == "scale":
        replicas = int(extra["replicas"])
        low, high = _bounds(ws.config, environment)
        if replicas < 1:
            raise UserError("--replicas must be at least 1")
        if not low <= replicas <= high and not (override and override.strip()):
            raise UserError(
                f"--replicas {replicas} is outside the {environment.tier} tier's bounds"
                f" {low}-{high}",
                hint="stay within the bounds, or add --override-bounds REASON (audited)",
            )
    if action == "down":
        spec = down_pipeline(ws.config, environment, str(ws.state_dir), root=str(ws.root))
    else:
        spec = action_pipeline(
            ws.config, environment, names, action, str(ws.state_dir), root=str(ws.root), **extra
        )
    service = service or run_service(ws)
    record = service.start(
        spec,
        actor=actor,
        environment=environment.name,
        services=dict.fromkeys(names, str(extra.get("version", ""))),
    )
    if action == "scale" and override:
        service.audit.append(
            actor, "scale.override", run=record.id, environment=environment.name,
            services=names, replicas=extra["replicas"], reason=override,
        )  # fmt: skip
    return record


class FrontDesk:
    """What a worker answers at its state folder's front door (`shipline.frontdoor`): a
    `deploy` or `promote` of the same user, checked by `submit_deploy` or `submit_promotion` as
    the command itself would check it, and a `vote` or `cancel`, decided by the run service as
    the command's own would decide it; on the project as it is on disk now (reloaded when the
    file changed)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.fresh: Workspace | None = None  # its own copy, made at first use
        self._reading: tuple[Workspace, RunService] | None = None  # what votes, cancels, `show` use

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The run recorded, the refusal (lines and exit code), or `fallback`: the command
        must do the work itself (another project, a request this worker does not read). Once
        `submit_deploy` is called the answer is never `fallback`: whatever happened, the
        command must not submit again."""
        args, actor, op = request.get("args"), request.get("actor"), request.get("op")
        needed = {"deploy": ("env",), "promote": ("source", "targets"), "vote": ("run", "approve"),
                  "cancel": ("run",), "show": ("run",)}.get(str(op))  # fmt: skip
        if needed is None or not isinstance(args, dict) or any(k not in args for k in needed):
            return {"fallback": "not a request this worker answers"}
        if not isinstance(actor, str) or not actor:
            return {"fallback": "no actor named"}
        try:
            ws = self._current(Path(str(request.get("config"))))
        except ShiplineError as exc:  # the configuration as it is now does not load
            return {"error": exc.lines(), "code": exc.exit_code}
        except OSError:
            return {"fallback": "the configuration cannot be read here"}
        if ws is None or request.get("database") != ws.database_url:
            return {"fallback": "another project"}
        try:
            if op == "show":
                return _show(self._reader(ws), args)
            if op in ("vote", "cancel"):
                return _act(self._reader(ws), str(op), args, actor)
            record = _submit(ws, str(op), args, actor, self._reader(ws))
        except ShiplineError as exc:
            return {"error": exc.lines(), "code": exc.exit_code}
        except Exception as exc:  # recorded or not, unknown: never submitted twice
            return {"error": [f"shipline worker: internal error: {type(exc).__name__}"], "code": 1}
        return {"run": record.id, "phase": record.phase}

    def open(self) -> None:
        """Load what the first request would need (the project as it is on disk, the run
        service and its reads' statements, the promotion's module), so that the first command
        handed over does not pay for it."""
        importlib.import_module("shipline.engine.promotion")
        with contextlib.suppress(ShiplineError, OSError):
            ws = self._current(self.ws.config_path)
            if ws is not None:
                self._reader(ws).store.warm()

    def _reader(self, ws: Workspace) -> RunService:
        """The run service that votes, cancels and `show`s, kept while the workspace is `ws`
        (a command waiting for a run asks at every move of it; a vote costs no connection)."""
        if self._reading is None or self._reading[0] is not ws:
            if self._reading is not None:
                self._reading[1].store.close()
            self._reading = (ws, run_service(ws))
        return self._reading[1]

    def _current(self, path: Path) -> Workspace | None:
        """This worker's project as its file says now; None for another project's file."""
        if path.resolve() != self.ws.config_path.resolve():
            return None
        if self.fresh is None and not self.ws.changed_on_disk():
            self.fresh = self.ws.sibling()  # what the worker loaded is what the file says
        elif self.fresh is None or self.fresh.changed_on_disk():
            self.fresh = Workspace.open(self.ws.config_path, self.ws.environ, self.ws.masker)
        return self.fresh


def _show(service: RunService, args: dict[str, Any]) -> dict[str, Any]:
    """A run as `runs show --json` shows it (`brief`: its phase alone, unless it ended and
    `detailsOnceEnded` asks for them then too), for a command waiting for its result."""
    from shipline.engine.runs import run_details

    run = int(args["run"])
    if args.get("brief"):
        phase = service.phase(run)
        if not (args.get("detailsOnceEnded") and Phase(phase).done):
            return {"phase": phase}
    # as the command prints it (values JSON has no type for, as text)
    details = json.loads(json.dumps(run_details(service, run), default=str))
    return {"phase": details["phase"], "details": details}


def _act(service: RunService, op: str, args: dict[str, Any], actor: str) -> dict[str, Any]:
    """A vote (`actor` votes) or a cancellation (`actor` asks), as its command would."""
    if op == "cancel":
        service.cancel(int(args["run"]), actor, _text(args.get("reason")))
        return {"run": int(args["run"])}
    effect = service.vote(
        int(args["run"]), actor, approve=bool(args["approve"]),
        stage=_text(args.get("stage")), comment=_text(args.get("comment")),
    )  # fmt: skip
    return {"stage": effect.stage, "waitingOn": list(effect.waiting_on)}


def _submit(
    ws: Workspace, op: str, args: dict[str, Any], actor: str, service: RunService
) -> RunRecord:
    """Submit what a front-door request asks, as its command would, through `service`."""
    if op == "promote":
        from shipline.engine.promotion import submit_promotion

        return submit_promotion(
            ws,
            source=str(args["source"]),
            targets=str(args["targets"]),
            services=_text(args.get("services")),
            tag=_text(args.get("tag")),
            release=_text(args.get("release")),
            actor=actor,
            skip_tests=bool(args.get("skip_tests")),
            canary=bool(args.get("canary")),
            emergency=bool(args.get("emergency")),
            reason=_text(args.get("reason")),
            service=service,
        )
    return submit_deploy(
        ws,
        env=str(args["env"]),
        services=_text(args.get("services")),
        tag=_text(args.get("tag")),
        actor=actor,
        emergency=bool(args.get("emergency")),
        reason=_text(args.get("reason")),
        force=bool(args.get("force")),
        release=_text(args.get("release")),
        skip_tests=bool(args.get("skip_tests")),
        service=service,
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
