"""Promotion up the ladder: versions from a tag or an immutable release, checked against what
succeeded below, queued as one durable run through every environment in order; and triggers,
which turn a branch or tag moving into the deploy its rules name."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shipline.domain.canary import canary_seconds, rolling_instead
from shipline.domain.models import CanaryStrategy
from shipline.domain.pipeline import PipelineSpec, StageSpec
from shipline.domain.promotion import (
    SPEC_TRIGGERS,
    PromotionRefused,
    matching_triggers,
    parse_ref,
    promotion_path,
)
from shipline.engine.pipelines import (
    approvers,
    find_environment,
    pick_services,
    promote_pipeline,
)
from shipline.engine.runs import RunService
from shipline.engine.wiring import RunRecord, SqlStateStore, require_target
from shipline.engine.workspace import Workspace
from shipline.errors import NotFoundError, UserError

# Targets whose services run from the demo workload here: they need no pushed image.
LOCAL_KINDS = {"local", "memory", "fake"}


def release_versions(
    ws: Workspace, name: str, services: list[str], target_kinds: set[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Each service's version in release `name`, and the image digests it was pushed with; a
    release whose images were not pushed (no digest) is refused for any target that pulls
    images."""
    store = SqlStateStore.connect(ws.database_url)
    try:
        found = store.release(name)
    finally:
        store.close()
    if found is None:
        raise NotFoundError(f"no release '{name}'", hint="see `shipline release list`")
    entries: dict[str, Any] = found["services"]
    missing = [s for s in services if s not in entries]
    if missing:
        raise UserError(
            f"release {name} has no version of {', '.join(missing)}",
            hint="promote the services it holds (--services), or make a release that holds them",
        )
    remote = sorted(target_kinds - LOCAL_KINDS)
    unpushed = [s for s in services if not entries[s].get("digest")]
    if remote and unpushed:
        raise UserError(
            f"release {name} was not pushed (no image digest for {', '.join(unpushed[:5])}):"
            f" it cannot go to a {'/'.join(remote)} target",
            hint="build with `shipline ci build --push` and make the release from that manifest",
        )
    versions = {s: str(entries[s].get("version") or entries[s].get("tag")) for s in services}
    digests = {s: str(entries[s]["digest"]) for s in services if entries[s].get("digest")}
    return versions, digests


def held_in(store: SqlStateStore, environment: str, versions: dict[str, str]) -> set[str]:
    """The services of `versions` whose version a run deployed to `environment` and that held
    there (deployed, verified, its gates passed, nothing rolled back), from the newest 1,000
    runs, read once."""
    held: set[str] = set()
    for run in store.list_runs(limit=1000):  # their specifications left unread
        matching = {s for s, v in versions.items() if s not in held and run.services.get(s) == v}
        if not matching:
            continue
        if run.pipeline == "deploy" and run.environment == environment:
            ok = run.phase == "succeeded"
        elif run.pipeline == "promote" and environment in run.params.get("environments", []):
            phases = {s["name"]: s["phase"] for s in store.stages(run.id)}
            ok = (
                phases.get(f"{environment}:deploy") == "succeeded"
                and all(
                    phases.get(f"{environment}:{name}", "succeeded") == "succeeded"
                    for name in ("verify", "tests")
                )
                and phases.get(f"{environment}:rollback") != "succeeded"
            )
        else:
            ok = False
        if ok:
            held |= matching
            if len(held) == len(versions):
                break
    return held


@dataclass(frozen=True)
class Promotion:
    """A promotion that every rule let through, not yet queued: its run's pipeline, the target
    environments in ladder order, each service's version, and where they come from."""

    spec: PipelineSpec
    order: list[str]
    versions: dict[str, str]
    source: str
    release: str | None
    runs: RunService  # what it was checked against (and is queued through)
    emergency_reason: str | None = None  # outside business hours, with the emergency approvals


def submit_promotion(
    ws: Workspace,
    *,
    source: str,
    targets: str,
    services: str | None,
    tag: str | None,
    release: str | None,
    actor: str,
    skip_tests: bool = False,
    canary: bool = False,
    emergency: bool = False,
    reason: str | None = None,
    allowed: Callable[[str], None] | None = None,
    service: RunService | None = None,
) -> RunRecord:
    """Queue one run that promotes the services' versions from `source` up to every target
    environment in ladder order, after the ladder's and the source's rules held; `allowed`
    raises for an environment the requester may not deploy to (the server's roles). `service`:
    the runs of `ws`'s project, as the caller keeps them (a worker's front desk), else opened
    here."""
    found = plan_promotion(
        ws, service, source=source, targets=targets, services=services, tag=tag,
        release=release, skip_tests=skip_tests, canary=canary, emergency=emergency,
        reason=reason, allowed=allowed,
    )  # fmt: skip
    return found.runs.start(
        found.spec,
        actor=actor,
        environment=found.order[-1],
        services=found.versions,
        approvers=approvers(ws.config),
        params={"environments": found.order, "from": found.source, "release": release},
        emergency_reason=found.emergency_reason,
    )


def preview_promotion(
    ws: Workspace,
    *,
    source: str,
    targets: str,
    services: str | None,
    tag: str | None,
    release: str | None,
    skip_tests: bool = False,
    canary: bool = False,
    emergency: bool = False,
    reason: str | None = None,
    allowed: Callable[[str], None] | None = None,
    service: RunService | None = None,
) -> dict[str, Any]:
    """What `submit_promotion` would queue, queuing nothing (`promote --dry-run`): refused for
    the same reasons, else each target environment in order with its approvals (their groups'
    display names), checks, strategy and test gates, and each service's version there now and
    after. `allowed` and `service` as for `submit_promotion`."""
    found = plan_promotion(
        ws, service, source=source, targets=targets, services=services, tag=tag,
        release=release, skip_tests=skip_tests, canary=canary, emergency=emergency,
        reason=reason, allowed=allowed,
    )  # fmt: skip
    runs = found.runs
    try:
        stages = {stage.name: stage for stage in found.spec.stages}
        rungs = []
        for name in found.order:
            deploy, gates = stages[f"{name}:deploy"], stages.get(f"{name}:tests")
            now = {}
            for svc in found.versions:
                made = runs.store.revisions(name, svc)
                now[svc] = str(made[-1]["version"]) if made else None
            checks = ws.config.environment(name).checks
            strategy = _strategy_of(deploy)
            versions = {svc: {"now": now[svc], "after": version,
                              **_rollout(str(strategy["type"]), now[svc], version)}
                        for svc, version in found.versions.items()}  # fmt: skip
            rungs.append({
                "environment": name,
                "approvals": _approvals(ws, deploy),
                "checks": checks.model_dump(by_alias=True, mode="json", exclude_none=True),
                "strategy": strategy,
                "tests": [step.name for step in gates.steps] if gates else [],
                "versions": versions,
                "canaries": _canaries(strategy, versions),
            })  # fmt: skip
    finally:
        if service is None:
            runs.store.close()
    return {"from": found.source, "release": found.release,
            "emergency": found.emergency_reason, "environments": rungs}  # fmt: skip


def _approvals(ws: Workspace, deploy: StageSpec) -> dict[str, Any] | None:
    """A deploy stage's approval policy, its groups named as people read them."""
    if deploy.approval is None:
        return None
    policy = deploy.approval.model_dump(mode="json", by_alias=True)
    groups = ws.config.approver_groups
    policy["groups"] = [
        {"name": g, "displayName": (groups[g].display_name if g in groups else None) or g}
        for g in deploy.approval.groups
    ]
    return policy


def _rollout(strategy: str, now: str | None, after: str) -> dict[str, str]:
    """How a service goes out on a rung whose strategy is `strategy`: a canary rolls instead
    where the deploy step would (`rolling_instead`), and says why."""
    why = rolling_instead(now, after) if strategy == "canary" else None
    return {"rollout": "rolling", "why": why} if why else {"rollout": strategy}


def _canaries(
    strategy: dict[str, Any], versions: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """A canary rung's canaries: how many, how long each runs when promoted, and in all (they
    run `maxParallel` at a time; `seconds` None: a pause waits for a person)."""
    if strategy["type"] != "canary":
        return None
    count = sum(1 for version in versions.values() if version["rollout"] == "canary")
    model = CanaryStrategy.model_validate(strategy)
    each = canary_seconds(model)
    rounds = math.ceil(count / model.max_parallel)
    return {"count": count, "seconds": each, "inAll": None if each is None else each * rounds}


def _strategy_of(deploy: StageSpec) -> dict[str, Any]:
    """The strategy a deploy stage's steps roll out with (a canary where one was asked)."""
    for step in deploy.steps:
        if isinstance(step.params.get("strategy"), dict):
            return dict(step.params["strategy"])
    return {"type": "rolling"}


def plan_promotion(
    ws: Workspace,
    service: RunService | None,
    *,
    source: str,
    targets: str,
    services: str | None,
    tag: str | None,
    release: str | None,
    skip_tests: bool = False,
    canary: bool = False,
    emergency: bool = False,
    reason: str | None = None,
    allowed: Callable[[str], None] | None = None,
) -> Promotion:
    """The promotion `submit_promotion` queues, once every rule let it through: refused (a
    UserError, exit 2) for a rung skipped, a version that did not succeed below, a release not
    pushed for a target that pulls images, a target that could not be built. `service`: the
    runs to check against, else opened here once the rules that need no store held."""
    from shipline.engine.assembly import run_service
    from shipline.engine.submit import check_tag, emergency_reason

    if (tag is None) == (release is None):
        raise UserError("give --tag TAG or --release NAME (one of them)")
    src = find_environment(ws.config, source)
    if targets.strip() == "all":  # the spec's cd-main: every rung above the source, in order
        above = ws.config.ladder[ws.config.ladder.index(src.name) + 1 :]
        targets = ",".join(above) if src.name in ws.config.ladder else targets
    chosen = [find_environment(ws.config, t.strip()) for t in targets.split(",") if t.strip()]
    skippable = {e.name for e in ws.config.environments if e.skippable}
    try:
        order = promotion_path(ws.config.ladder, src.name, [e.name for e in chosen], skippable)
    except PromotionRefused as exc:
        raise UserError(str(exc)) from None
    envs = [ws.config.environment(name) for name in order]
    why = emergency_reason(envs, emergency, reason)
    if allowed is not None:
        for name in order:
            allowed(name)
    kinds = {require_target(ws.config, e.name) for e in envs}
    if services is None:  # as for deploy: a protected environment has no default of "all"
        guarded = [e.name for e in envs if e.protected]
        if guarded:
            raise UserError(
                f"{', '.join(guarded)} {'is' if len(guarded) == 1 else 'are'} protected:"
                " name the services to promote",
                hint="--services a,b (or --services all, on purpose)",
            )
        services = "all"
    names = pick_services(ws.config, services)
    digests: dict[str, str] = {}
    if release is not None:
        versions, digests = release_versions(ws, release, names, kinds)
    else:
        assert tag is not None
        check_tag(tag)
        versions = dict.fromkeys(names, tag)
    for env in envs:  # a rung no run could deploy to is refused before the first one starts
        ws.check_target(env.name)
    runs = service or run_service(ws)
    try:
        held = held_in(runs.store, src.name, versions)
    except BaseException:
        if service is None:
            runs.store.close()
        raise
    below = [s for s in versions if s not in held]
    if below:
        if service is None:
            runs.store.close()
        shown = ", ".join(f"{s} {versions[s]}" for s in below[:6])
        raise UserError(
            f"not promoted: {shown}{' ...' if len(below) > 6 else ''} did not succeed in"
            f" {src.name}",
            hint=f"deploy it to {src.name} first: shipline deploy --env {src.name} ...",
        )
    spec = promote_pipeline(
        ws.config, src, envs, versions, str(ws.state_dir), root=str(ws.root),
        tests=not skip_tests, canary=canary, digests=digests,
    )  # fmt: skip
    return Promotion(spec, order, versions, src.name, release, runs, why)


def trigger_plan(ws: Workspace, ref: str) -> list[dict[str, Any]]:
    """What `ref` moving starts under the configured triggers (the spec's when none are
    configured): one entry per matching rule."""
    try:
        moved = parse_ref(ref)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    rules = ws.config.triggers or list(SPEC_TRIGGERS)
    plan = []
    for rule in matching_triggers(rules, moved):
        if rule.deploy_to:
            env = find_environment(ws.config, rule.deploy_to)
            plan.append({"ref": ref, "kind": moved.kind, "name": moved.name,
                         "action": "deploy", "environment": env.name,
                         "approvals": env.approvals is not None})  # fmt: skip
        else:
            plan.append({"ref": ref, "kind": moved.kind, "name": moved.name, "action": "ci"})
    return plan


def run_triggers(
    ws: Workspace,
    ref: str,
    *,
    tag: str | None,
    release: str | None,
    actor: str,
    dry_run: bool = False,
    service: RunService | None = None,
) -> list[dict[str, Any]]:
    """Queue the deploys the trigger rules name for `ref` (each entry gains its `run`); with
    `dry_run`, only say what they would be. `service`: as for `submit_deploy`."""
    from shipline.engine.submit import submit_deploy

    plan = trigger_plan(ws, ref)
    if dry_run:
        return plan
    deploys = [entry for entry in plan if entry["action"] == "deploy"]
    if deploys and tag is None and release is None:
        raise UserError("a deploy needs the version: --tag TAG or --release NAME")
    for entry in deploys:
        record = submit_deploy(
            ws, env=entry["environment"], services="all", tag=tag, release=release, actor=actor,
            service=service,
        )  # fmt: skip
        entry["run"] = record.id
    return plan
