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
  - the run alone (the worker's start of the run to its end, from the state store) and its own
    share, which leaves out the CLI's start-up and submission.
Run: .venv/bin/python bench/promote.py
"""

from __future__ import annotations

import json
import os
import signal
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
RUN_SECONDS = 0.0  # the promotion run itself, from the worker starting it to its end
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


def with_shipline() -> tuple[float, float]:
    """(seconds for the dev deploy, seconds for the promotion dev -> qa -> staging)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {**os.environ, "SHIPLINE_CONFIG": str(project(folder)),
               "SHIPLINE_HOME": str(folder / "state"), "SHIPLINE_USER": "bench"}  # fmt: skip
        env.pop("SHIPLINE_DATABASE_URL", None)
        with open(folder / "worker.log", "wb") as log:
            worker = subprocess.Popen([EXE, "worker", "--poll-seconds", "0.1"], env=env,
                                      stdout=log, stderr=log)  # fmt: skip
        try:
            start = time.perf_counter()
            done = sh(env, "deploy", "--env", "dev", "--tag", "1.0.0", "--json")
            deployed = time.perf_counter() - start
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr
            start = time.perf_counter()
            done = sh(env, "promote", "--from", "dev", "--to", "qa,staging", "--tag", "1.0.0",
                      "--json")  # fmt: skip
            promoted = time.perf_counter() - start
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr
            shown = json.loads(done.stdout)
            began, ended = (datetime.fromisoformat(shown[k]) for k in ("startedAt", "finishedAt"))
            global RUN_SECONDS  # noqa: PLW0603 - one figure handed to main()
            RUN_SECONDS = (ended - began).total_seconds()
            for name in ENVIRONMENTS:
                sh(env, "down", "--env", name)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=120)
        return deployed, promoted


def main() -> None:
    config = load_config(QUIKAPP)
    services = [(s.name, config.service_health_path(s)) for s in config.services]
    before = [bare(services) for _ in range(2)]
    deployed, promoted = with_shipline()
    # the floor measured on both sides of shipline's run (a noisy machine drifts), the fastest
    floor_one = min(before + [bare(services) for _ in range(2)])
    floor = floor_one * 2  # qa and staging
    print(json.dumps({
        "services": len(services),
        "environments": list(ENVIRONMENTS),
        "servicesOwnStartupPerEnvironmentSeconds": round(floor_one, 2),
        "devDeploySeconds": round(deployed, 2),
        "promoteSeconds": round(promoted, 2),
        "promoteFloorSeconds": round(floor, 2),
        "ratio": round(promoted / floor, 2),
        "shiplineOwnShare": round((promoted - floor) / promoted, 3),
        "runSeconds": round(RUN_SECONDS, 2),  # without the CLI's start-up and submission
        "runOwnShare": round((RUN_SECONDS - floor) / RUN_SECONDS, 3),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
