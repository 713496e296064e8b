"""The guided demo (`shipline demo`): a project's whole ladder on this machine, promoted as its
people would promote it.

From the configuration in use (QuikApp's, in the example) the demo derives a project of its own
whose every environment deploys to the local target, and keeps the rest as configured: the
ladder, approvals and their groups, business hours, strategies (canaries included), health
checks, test gates, variable groups, triggers. What it has to change to run on one machine in
about a minute, it says, in the derived file's header and on screen: targets become local,
every service runs one replica, secrets come from the embedded encrypted store (random values),
and canaries bake for seconds, not minutes.

The guide then deploys the first rung, promotes the release through every rung above, and a
hotfix of a few services after it (canaries where the ladder has them); when a stage waits for
approval, it votes as the members of the groups the stage waits on, as those people would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ruamel.yaml import YAML

from shipline.domain.checks import Verdict, check_window
from shipline.domain.models import Config
from shipline.engine.durable import WORKER_ENV
from shipline.engine.locations import DATABASE_ENV, STATE_ENV
from shipline.engine.runs import RunService
from shipline.engine.wiring import RunRecord, load_config_files
from shipline.engine.workspace import Workspace
from shipline.errors import PermissionDenied, UserError, VoteNotCounted

FOLDER = "demo"  # under the project's state folder
ACTOR = "demo"  # who starts the demo's runs (never an approver: a requester cannot approve)
BAKE_SECONDS = 6.0  # a canary weight's bake, at most
INTERVAL_SECONDS = 3.0  # a canary analysis interval, at most (enough requests at 10 %)
PAUSE_SECONDS = 3.0  # a timed canary pause, at most
HOTFIX = 3  # services in the hotfix release that follows the first one


def demo_data(config: Config, source: Path) -> tuple[dict[str, Any], list[str]]:
    """The demo's configuration, derived from `config` (read from `source`), and the lines that
    say what it changed."""
    data = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    data.pop("include", None)
    changed: list[str] = []
    remote = sorted(name for name, t in data["targets"].items() if t["type"] != "local")
    if remote:
        changed.append(f"targets {', '.join(remote)}: type local (processes on this machine)")
    data["targets"] = {name: {"type": "local"} for name in data["targets"]}
    several = sorted(n for n, t in data["tiers"].items() if t["resources"]["minReplicas"] > 1)
    for name in several:
        data["tiers"][name]["resources"]["minReplicas"] = 1
    if several:
        changed.append(f"tiers {', '.join(several)}: one replica per service (minReplicas 1)")
    vaults = sorted(n for n, s in data.get("secretStores", {}).items() if s["type"] != "file")
    for name in vaults:
        data["secretStores"][name] = {"type": "file"}
    if vaults:
        changed.append(
            f"secret stores {', '.join(vaults)}: the embedded encrypted store (random values)"
        )
    quicker = {env["name"]: _quicker(env["strategy"]) for env in data["environments"]}
    shortened = [name for name, (canary, _) in quicker.items() if canary]
    if shortened:
        changed.append(
            f"canaries of {', '.join(shortened)}: bake at most {BAKE_SECONDS:g} s a step,"
            f" an analysis every {INTERVAL_SECONDS:g} s at most"
        )
    waited = [name for name, (_, person) in quicker.items() if person]
    if waited:
        changed.append(
            f"canary pauses for a person in {', '.join(waited)}: {PAUSE_SECONDS:g} s"
            " (nobody promotes a canary in the demo)"
        )
    header = [f"{MARK[2:]}{source}: its ladder, approvals, business hours,",
              "strategies, health checks and test gates, with every environment on this machine.",
              "What differs:", *(f"  - {line}" for line in changed),
              "Edit the original, not this file: the demo writes it again each time."]  # fmt: skip
    return data, header


def _quicker(strategy: dict[str, Any]) -> tuple[bool, bool]:
    """Shorten a canary strategy's waits in place: (whether it is a canary, whether one of its
    pauses waited for a person, and now lasts PAUSE_SECONDS: nobody promotes in a demo)."""
    if strategy.get("type") != "canary":
        return False, False
    strategy["bakeSeconds"] = min(float(strategy["bakeSeconds"]), BAKE_SECONDS)
    analysis = strategy["analysis"]
    analysis["intervalSeconds"] = min(float(analysis["intervalSeconds"]), INTERVAL_SECONDS)
    waited = False
    for step in strategy["steps"]:
        if not isinstance(step, dict) or "pause" not in step:
            continue
        pause = step["pause"]
        waited = waited or pause.get("duration") is None
        pause["duration"] = min(float(pause.get("duration") or PAUSE_SECONDS), PAUSE_SECONDS)
    return True, waited


MARK = "# Written by `shipline demo` from "


def derived(path: Path) -> list[str] | None:
    """What differs, when `path` is a configuration the demo wrote (a command run with it in use
    acts on that demo), else None."""
    try:
        with path.open() as text:
            head = [line.rstrip("\n") for line, _ in zip(text, range(64), strict=False)]
    except OSError:
        return None
    if not head or not head[0].startswith(MARK):
        return None
    said = [line[2:] for line in head if line.startswith("#   - ")]
    return said


def write_demo(ws: Workspace) -> tuple[Path, list[str]]:
    """Write the demo's project under `ws`'s state folder: its configuration, and a link to each
    of the project's other files and folders (test scripts, manifests, Dockerfiles), which its
    commands name by relative paths. Returns the configuration's path and what differs. When
    `ws` is itself the demo's project (its configuration in use), it is left as it is."""
    said = derived(ws.config_path)
    if said is not None:
        return ws.config_path, said
    config, files = load_config_files(ws.config_path)
    data, header = demo_data(config, ws.config_path)
    folder = ws.state_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    skipped = {p.resolve() for p in files} | {ws.state_dir.resolve()}
    for item in sorted(ws.root.iterdir()):
        link = folder / item.name
        if item.resolve() in skipped or item.name.startswith(".") or link.exists():
            continue
        os.symlink(item.resolve(), link)
    path = folder / "shipline.yaml"
    with path.open("w") as out:
        out.write("".join(f"# {line}\n" for line in header))
        dumper = YAML()  # round-trip: the configuration's own order, block style
        dumper.default_flow_style = False
        dumper.dump(data, out)
    return path, header[3:-1]


def closed_now(config: Config, environments: list[str], now: datetime) -> list[str]:
    """The environments among `environments` whose business hours are closed at `now`."""
    closed = []
    for name in environments:
        hours = config.environment(name).checks.business_hours
        if hours is None:
            continue
        verdict = check_window(hours, now, ZoneInfo(hours.timezone)).verdict
        if verdict != Verdict.PASS:
            closed.append(name)
    return closed


@dataclass(frozen=True)
class Approval:
    """A vote the guide cast: on which stage, as whom, for which group."""

    stage: str
    user: str
    group: str


def approve_waiting(
    runs: RunService, config: Config, run_id: int, handled: set[str]
) -> list[Approval]:
    """Approve every stage of the run that waits for approval and is not in `handled`, as the
    first member of each group it still waits on who may vote (the groups' own people; the
    demo's requester is none of them); each stage voted on is added to `handled` (until the
    worker moves it on, it still reads as waiting: no vote is tried twice). A stage is voted on
    once it waits for approval (its policies recorded, the emergency approvals among them where
    the run overrode business hours), not while it waits for a lock or its hours. Returns the
    votes cast."""
    cast: list[Approval] = []
    record = runs.get(run_id, spec=False)
    if record.phase != "waiting":
        return cast
    for stage in runs.store.stages(run_id):
        waits_for_votes = "approvalPolicies" in (stage.get("outputs") or {})  # not for a lock
        if stage["phase"] != "waiting" or not waits_for_votes or stage["name"] in handled:
            continue
        handled.add(stage["name"])
        needed = list(dict.fromkeys(g for p in runs.policies(run_id, stage["name"])
                                    for g in p.groups))  # fmt: skip
        for _ in range(len(needed) + 1):
            if not needed:
                break
            group = needed[0]
            effect = None
            moved = False
            for user in config.approver_groups[group].members:
                try:
                    effect = runs.vote(run_id, user, approve=True, stage=stage["name"],
                                       comment=f"demo: as {group}")  # fmt: skip
                except (VoteNotCounted, PermissionDenied):
                    continue  # this person's vote would not count: the next one
                except UserError:  # the stage no longer waits (approved, or the run ended)
                    moved = True
                    break
                cast.append(Approval(stage["name"], user, group))
                break
            if moved or effect is None:  # moved on, or nobody of the group could vote
                break
            needed = list(effect.waiting_on)
    return cast


def hotfix_services(config: Config) -> list[str]:
    """The services of the hotfix release: the first of each of a few stacks."""
    chosen: dict[str, str] = {}
    for service in config.services:
        chosen.setdefault(service.stack, service.name)
    return list(chosen.values())[:HOTFIX]


def check_demo(config: Config) -> None:
    """The demo needs a ladder of at least two rungs to promote along."""
    if len(config.ladder) < 2:
        raise UserError(
            "the demo promotes up the ladder: this configuration's ladder has fewer than two"
            " environments",
            hint="add `ladder: [dev, qa, ...]` with the environments in order",
        )


def demo_environ(path: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the demo's commands and worker run in: its configuration, its own state
    folder beside it, and the embedded store (never the original project's, nor a team's
    PostgreSQL)."""
    env = dict(os.environ if environ is None else environ)
    for name in (STATE_ENV, DATABASE_ENV, WORKER_ENV):
        env.pop(name, None)
    env["SHIPLINE_CONFIG"] = str(path)
    return env


def worker_pid(ws: Workspace) -> int | None:
    """The pid of the demo's worker when one runs."""
    pid = _pid_in(ws.state_dir / "worker-local.pid")
    return pid if pid is not None and _alive(pid) else None


def start_worker(ws: Workspace, timeout: float = 60) -> int:
    """Start the demo's worker in the background (it outlives this command: the services it
    deployed keep running); its log is `worker.log` in the demo's state folder."""
    ws.state_dir.mkdir(parents=True, exist_ok=True)
    with open(ws.state_dir / "worker.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "shipline", "worker"], env=dict(ws.environ),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pid = worker_pid(ws)
        if pid is not None:
            return pid
        time.sleep(0.1)
    raise UserError("the demo's worker did not start", hint=f"see {ws.state_dir / 'worker.log'}")


@dataclass(frozen=True)
class DemoStep:
    """One run of the guide: what it shows, and what it starts."""

    title: str
    kind: str  # deploy | promote
    environment: str  # a deploy's environment; a promotion's source
    services: list[str]
    tag: str
    emergency: list[str]  # the rungs whose business hours are closed now (an emergency)


def demo_plan(config: Config, now: datetime) -> list[DemoStep]:
    """The guide's runs: release 1.0.0 of every service on the first rung, promoted through
    every rung above; then a hotfix 1.1.0 of a few services, the same way (canaries where the
    ladder has them, against 1.0.0). A rung whose business hours are closed now is passed as
    an emergency, with its emergency approvals."""
    first, above = config.ladder[0], config.ladder[1:]
    every = [s.name for s in config.services]
    hot = hotfix_services(config)
    closed = closed_now(config, above, now)
    up = " -> ".join(above)
    return [
        DemoStep(f"deploy 1.0.0 of every service to {first}", "deploy", first, every, "1.0.0", []),
        DemoStep(f"promote 1.0.0 from {first}: {up}", "promote", first, every, "1.0.0", closed),
        DemoStep(f"hotfix 1.1.0 of {', '.join(hot)} to {first}", "deploy", first, hot, "1.1.0", []),
        DemoStep(f"promote the hotfix from {first}: {up}", "promote", first, hot, "1.1.0", closed),
    ]


def start_step(ws: Workspace, runs: RunService, step: DemoStep) -> RunRecord:
    """Queue the run of `step`, by the demo's requester, through the rules every run obeys."""
    from shipline.engine.promotion import submit_promotion
    from shipline.engine.submit import submit_deploy

    services = ",".join(step.services)
    if step.kind == "deploy":
        return submit_deploy(ws, env=step.environment, services=services, tag=step.tag,
                             actor=ACTOR, service=runs)  # fmt: skip
    reason = None
    if step.emergency:
        reason = f"demo: business hours of {', '.join(step.emergency)} are closed now"
    return submit_promotion(
        ws, source=step.environment, targets="all", services=services, tag=step.tag,
        release=None, actor=ACTOR, emergency=bool(step.emergency), reason=reason, service=runs,
    )  # fmt: skip


def stop_demo(ws: Workspace, timeout: float = 120) -> list[str]:
    """Cancel the demo's unfinished runs, take down the services of every rung (one `down` run
    each, by its worker), then stop the worker. Returns the environments taken down."""
    from shipline.domain.pipeline import Phase
    from shipline.engine.assembly import run_service
    from shipline.engine.submit import submit_action

    runs = run_service(ws)
    try:
        for record in runs.store.list_runs(limit=1000):  # a run left waiting would hold its locks
            if not Phase(record.phase).done:
                with contextlib.suppress(UserError):  # ended meanwhile
                    runs.cancel(record.id, ACTOR, "the demo was stopped")
        started = [(env, submit_action(ws, env=env, services=None, action="down", actor=ACTOR,
                                       service=runs).id)
                   for env in ws.config.ladder]  # fmt: skip
        end = time.monotonic() + timeout
        for env, run in started:
            while not Phase(runs.phase(run)).done:
                if time.monotonic() > end:
                    raise UserError(f"the demo's services in {env} did not stop (run {run})")
                time.sleep(0.1)
    finally:
        runs.store.close()
    pid = worker_pid(ws)
    if pid is not None:  # the worker stops the local daemon on its way out; both are awaited
        daemon = _pid_in(ws.state_dir / "local.lock")
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while time.monotonic() < end and (
            worker_pid(ws) is not None or (daemon is not None and _alive(daemon))
        ):
            time.sleep(0.1)
    return [env for env, _ in started]


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a child of ours that ended but was not reaped yet is gone too
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def try_next(config: Config) -> list[str]:
    """Commands to try on the demo's ladder: a new version of a service to the first rung, then
    up to the first rung that waits for approval, and the vote of its first approver."""
    first, service = config.ladder[0], hotfix_services(config)[0]
    lines = [f"shipline deploy --env {first} --services {service} --tag 1.2.0"]
    for index, name in enumerate(config.ladder[1:], start=1):
        approvals = config.environment(name).approvals
        if approvals is None:
            continue
        group = config.approver_groups[approvals.groups[0]]
        up = ",".join(config.ladder[1 : index + 1])
        lines += [
            f"shipline promote --from {first} --to {up} --services {service} --tag 1.2.0"
            f"   # {name} waits for {group.display_name or approvals.groups[0]}",
            f"shipline approve RUN --as {group.members[0]}",
        ]
        break
    return lines
