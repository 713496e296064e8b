"""Promotion speed: the 22 QuikApp services promoted dev -> qa -> staging on the local target
with zero bake time, through the CLI and a real worker (one durable run: each environment's
deploy, verification and rollback guard in turn).

Measured in the same run:
  - the floor: the services' own start-up, each workload process started and polled until
    healthy, one after another, once per environment (what waiting on the services costs and no
    orchestrator can avoid when it rolls one service after another);
  - shipline: from `shipline promote` to the run's end (the CLI's submission, the worker picking
    the run up, every stage's bookkeeping in the state store, the rollouts themselves);
  - shipline's own share: (shipline - floor) / shipline. Goal: under 5 %.
  - the same share against the services' start-up inside the run itself: the local target logs
    each new replica's seconds from its process start to its first healthy answer, and their
    sum is what the promotion waited on the services, measured under the very load and noise
    the promotion ran in (the floor is measured beside it, a few seconds apart);
  - the run alone (the worker's start of the run to its end, from the state store) and its own
    share, which leaves out the CLI's start-up and submission;
  - where the run's own time went, from its stages' durations: the deploy stages beyond the
    floor (the bookkeeping between rollouts), the verification stages after their deploy stage
    ended (a service is verified as soon as it rolled out, while the next one rolls), and the
    rest;
  - the CPU seconds the promotion cost the worker and the local services' daemon.
Each of ROUNDS rounds (default 3) promotes in a new state folder with a new worker, the floor
measured just before and just after it; the figures are the medians of the rounds' own figures.
Run: .venv/bin/python bench/promote.py
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy import bare  # the services' own start-up, as bench/deploy.py measures it

from shipline.config.loader import load_config

EXE = str(Path(sys.executable).parent / "shipline")
QUIKAPP = Path(__file__).resolve().parents[1] / "examples" / "quikapp" / "shipline.yaml"
ENVIRONMENTS = ("dev", "qa", "staging")
ROUNDS = int(os.environ.get("ROUNDS", "3"))  # promotions, each in a new state folder
WIDE = int(os.environ.get("WIDE", "1"))  # strategy.maxParallel of every rung


def project(folder: Path) -> Path:
    """The 22 QuikApp services, every rung on the local target, no approvals, no bake."""
    config = load_config(QUIKAPP)
    services = "\n".join(
        f"  - {{name: {s.name}, stack: demo, healthPath: {config.service_health_path(s)}}}"
        for s in config.services
    )
    envs = "\n".join(
        f"  - {{name: {e}, cluster: local, namespace: {e}, tier: nonprod, target: here,"
        f" strategy: {{type: rolling, maxParallel: {WIDE}}}}}"
        for e in ENVIRONMENTS
    )
    path = folder / "shipline.yaml"
    path.write_text(
        f"project: promote-bench\nstacks:\n  demo: {{port: 8000, healthPath: /health}}\n"
        f"services:\n{services}\ntiers:\n  nonprod: {{resources: {{minReplicas: 1, maxReplicas: 2}}}}\n"
        f"targets:\n  here: {{type: local}}\nenvironments:\n{envs}\n"
        f"ladder: [{', '.join(ENVIRONMENTS)}]\n"
    )
    return path


def sh(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=900,
                          check=False)  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds process `pid` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def succeeded(done: subprocess.CompletedProcess[str]) -> None:
    """Stop the bench, saying why, when a command of it did not succeed: the run's phase and
    reason and the steps that did not succeed, when it printed the run."""
    if done.returncode == 0:
        return
    try:
        shown = json.loads(done.stdout)
        why = f"run {shown['id']} {shown['phase']}: {shown.get('reason')}" + "".join(
            f"\n  {stage['name']}/{step['name']}: {step['phase']} {step.get('error') or ''}"
            for stage in shown.get("stages", []) for step in stage.get("steps", [])
            if step["phase"] not in ("succeeded", "skipped")
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        why = done.stdout[-2000:]
    raise SystemExit(f"{' '.join(done.args[1:])}: exit {done.returncode}: {why}\n{done.stderr}")


STARTED = re.compile(r"healthy on :\d+, (\d+\.\d+) s after it started")


def startup_in_run(env: dict[str, str], run: int) -> float:
    """The seconds the run's new replicas took from their process start to healthy."""
    shown = sh(env, "runs", "logs", str(run), "--json")
    succeeded(shown)
    return sum(float(m.group(1)) for entry in json.loads(shown.stdout)["logs"]
               if (m := STARTED.search(entry["line"])))  # fmt: skip


def with_shipline() -> tuple[float, float, float, dict[str, float]]:
    """Seconds for the dev deploy, for the promotion dev -> qa -> staging as the command took
    it, for the promotion run alone (the worker's start of it to its end), and the run's
    seconds by kind of stage (as `runs show --json` tells them)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {**os.environ, "SHIPLINE_CONFIG": str(project(folder)),
               "SHIPLINE_HOME": str(folder / "state"), "SHIPLINE_USER": "bench"}  # fmt: skip
        env.pop("SHIPLINE_DATABASE_URL", None)
        with open(folder / "worker.log", "wb") as log:
            worker = subprocess.Popen([EXE, "worker"], env=env,
                                      stdout=log, stderr=log)  # fmt: skip
        try:
            start = time.perf_counter()
            done = sh(env, "deploy", "--env", "dev", "--tag", "1.0.0", "--json")
            deployed = time.perf_counter() - start
            succeeded(done)
            # CPU the promotion costs the worker and the local services' daemon (the services'
            # own start-up runs in their processes, not in these two)
            daemon = int((folder / "state" / "local.lock").read_text())
            used = cpu_seconds(worker.pid) + cpu_seconds(daemon)
            start = time.perf_counter()
            done = sh(env, "promote", "--from", "dev", "--to", "qa,staging", "--tag", "1.0.0",
                      "--json")  # fmt: skip
            promoted = time.perf_counter() - start
            kinds_cpu = cpu_seconds(worker.pid) + cpu_seconds(daemon) - used
            succeeded(done)
            shown = json.loads(done.stdout)
            began, ended = (datetime.fromisoformat(shown[k]) for k in ("startedAt", "finishedAt"))
            alone = (ended - began).total_seconds()
            kinds = {"deploy": 0.0, "verify": 0.0}
            stages = {stage["name"]: stage for stage in shown["stages"]}
            for name in ENVIRONMENTS[1:]:
                deploy, verify = stages[f"{name}:deploy"], stages[f"{name}:verify"]
                kinds["deploy"] += deploy["seconds"]
                # verification checks each service as soon as it rolled out: what the run
                # waits on is what it still checks once the last service rolled out
                ended = (datetime.fromisoformat(verify["finishedAt"])
                         - datetime.fromisoformat(deploy["finishedAt"])).total_seconds()  # fmt: skip
                kinds["verify"] += max(ended, 0.0)
            kinds["rest"] = alone - kinds["deploy"] - kinds["verify"]
            kinds["cpu"] = kinds_cpu
            kinds["startup"] = startup_in_run(env, int(shown["id"]))
            for name in ENVIRONMENTS:
                sh(env, "down", "--env", name)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=120)
        return deployed, promoted, alone, kinds


def main() -> None:
    config = load_config(QUIKAPP)
    services = [(s.name, config.service_health_path(s)) for s in config.services]
    rounds = []
    for _ in range(ROUNDS):
        # the floor measured on both sides of each promotion (a noisy machine drifts)
        before = bare(services)
        deployed, promoted, alone, kinds = with_shipline()
        floor = (before + bare(services)) / 2 * 2  # qa and staging
        rounds.append({
            "floorSeconds": round(floor, 2), "devDeploySeconds": round(deployed, 2),
            "promoteSeconds": round(promoted, 2), "runSeconds": round(alone, 2),
            "shiplineOwnShare": round((promoted - floor) / promoted, 3),
            "runOwnShare": round((alone - floor) / alone, 3),
            # where the run's own time went: its deploy stages beyond the floor, its
            # verification stages, and everything else (validation, locks, the end)
            "deployBeyondFloorSeconds": round(kinds["deploy"] - floor, 2),
            "verifySeconds": round(kinds["verify"], 2), "restSeconds": round(kinds["rest"], 2),
            "workerAndDaemonCpuSeconds": round(kinds["cpu"], 2),
            # waiting on the services as the run itself saw it
            "startupInRunSeconds": round(kinds["startup"], 2),
            "shiplineOwnShareInRun": round((promoted - kinds["startup"]) / promoted, 3),
            "runOwnShareInRun": round((alone - kinds["startup"]) / alone, 3),
        })  # fmt: skip
    mid = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(json.dumps({
        "services": len(services),
        "environments": list(ENVIRONMENTS),
        "rounds": rounds,
        "servicesOwnStartupPerEnvironmentSeconds": round(mid["floorSeconds"] / 2, 2),
        "promoteFloorSeconds": mid["floorSeconds"],
        "devDeploySeconds": mid["devDeploySeconds"],
        "promoteSeconds": mid["promoteSeconds"],
        "ratio": round(mid["promoteSeconds"] / mid["floorSeconds"], 2),
        # medians over the rounds, each round's share against its own floor
        "shiplineOwnShare": mid["shiplineOwnShare"],
        "runSeconds": mid["runSeconds"],  # without the CLI's start-up and submission
        "runOwnShare": mid["runOwnShare"],
        "deployBeyondFloorSeconds": mid["deployBeyondFloorSeconds"],
        "verifySeconds": mid["verifySeconds"],
        "restSeconds": mid["restSeconds"],
        "workerAndDaemonCpuSeconds": mid["workerAndDaemonCpuSeconds"],
        "startupInRunSeconds": mid["startupInRunSeconds"],
        "shiplineOwnShareInRun": mid["shiplineOwnShareInRun"],
        "runOwnShareInRun": mid["runOwnShareInRun"],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
