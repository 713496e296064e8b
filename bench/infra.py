"""Infrastructure run overhead: plan + apply of the test module (built-in `terraform_data`
resources, the local backend) through shipline (`infra apply --auto-approve`: the CLI, a worker,
the durable run, a sealed plan, its summary and the recorded outputs) against plain terraform
(init, plan -out, apply of that plan) on the same module, in the same run. Each round changes one
variable so that both plan and apply real changes.

Run: .venv/bin/python bench/infra.py [ROUNDS]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXE = str(Path(sys.executable).parent / "shipline")
PROJECT = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "projects" / "infra"
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def _nodes(project: Path, count: int) -> None:
    tfvars = project / "terraform" / "environments" / "dev.tfvars"
    tfvars.write_text(f'environment = "dev"\nnode_count  = {count}\n')


def plain(folder: Path) -> list[float]:
    """init, plan -out, apply: what a pipeline step runs by hand."""
    project = folder / "plain"
    shutil.copytree(PROJECT, project)
    root = project / "terraform"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(TF_IN_AUTOMATION="1", TF_DATA_DIR=str(folder / "plain-data"),
               TF_VAR_dbPassword="bench", TF_VAR_owner="platform")  # fmt: skip
    times = []
    for round_ in range(ROUNDS):
        _nodes(project, round_ + 1)
        start = time.perf_counter()
        for args in (
            ["init", "-input=false", f"-backend-config=path={folder / 'plain.tfstate'}"],
            ["plan", "-input=false", "-var-file=environments/dev.tfvars", "-out=p.tfplan"],
            ["apply", "-input=false", "p.tfplan"],
        ):
            subprocess.run(["terraform", f"-chdir={root}", *args, "-no-color"], env=env,
                           check=True, capture_output=True)  # fmt: skip
        times.append(time.perf_counter() - start)
    return times


def shipline(folder: Path) -> list[float]:
    """`shipline infra apply --env dev --auto-approve`, a worker already running."""
    project = folder / "shipline"
    shutil.copytree(PROJECT, project)
    env = {**os.environ, "SHIPLINE_CONFIG": str(project / "shipline.yaml"),
           "SHIPLINE_HOME": str(folder / "state"), "SHIPLINE_USER": "bench"}  # fmt: skip
    env.pop("SHIPLINE_DATABASE_URL", None)
    subprocess.run([EXE, "secrets", "set", "TF-DB-PASSWORD"], input="bench", text=True, env=env,
                   check=True, capture_output=True)  # fmt: skip
    with open(folder / "worker.log", "wb") as log:
        worker = subprocess.Popen([EXE, "worker", "--poll-seconds", "0.1"], env=env, stdout=log,
                                  stderr=log)  # fmt: skip
    times = []
    try:
        for round_ in range(ROUNDS):
            _nodes(project, round_ + 1)
            start = time.perf_counter()
            done = subprocess.run([EXE, "infra", "apply", "--env", "dev", "--auto-approve",
                                   "--json"], env=env, capture_output=True, text=True, check=False)  # fmt: skip
            times.append(time.perf_counter() - start)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    return times


def main() -> None:
    if shutil.which("terraform") is None:
        sys.exit("terraform is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        by_hand = plain(Path(tmp))
        through = shipline(Path(tmp))
    by_hand.sort()
    through.sort()
    median_plain, median_shipline = by_hand[len(by_hand) // 2], through[len(through) // 2]
    print(json.dumps({
        "rounds": ROUNDS,
        "plainTerraformSeconds": round(median_plain, 2),
        "shiplineSeconds": round(median_shipline, 2),
        "ratio": round(median_shipline / median_plain, 2),
        "overheadSeconds": round(median_shipline - median_plain, 2),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
