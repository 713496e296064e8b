"""Command start-up: the median wall time of 20 runs of each everyday command, next to
`python -c pass` from the same environment (the interpreter's own floor), in the same run.

Commands: `--help`, `ci tag`, `ci detect` over an empty range, `status` and `runs list` on a
small project with some history. Goals (issue "operator experience"): --help < 100 ms, ci tag
and ci detect < 120 ms, status and runs list < 300 ms on this machine.

Run: .venv/bin/python bench/startup.py [RUNS]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXE = str(Path(sys.executable).parent / "shipline")
PROJECT = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "projects" / "memory"
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 20


def median(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(PROJECT / "shipline.yaml", folder / "shipline.yaml")
        git = ["git", "-c", "user.name=b", "-c", "user.email=b@x"]
        subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
        subprocess.run([*git, "add", "-A"], cwd=folder, check=True)
        subprocess.run([*git, "commit", "-qm", "x"], cwd=folder, check=True)
        env = {**os.environ, "SHIPLINE_CONFIG": str(folder / "shipline.yaml"),
               "SHIPLINE_HOME": str(folder / "state"), "SHIPLINE_USER": "bench"}  # fmt: skip
        env.pop("SHIPLINE_DATABASE_URL", None)
        for n in range(3):  # some history for `runs list` and `status` (no worker: queued)
            subprocess.run([EXE, "deploy", "--env", "dev", "--tag", f"1.0.{n}", "--detach"],
                           env=env, cwd=folder, capture_output=True, check=False)  # fmt: skip
        floor = median([sys.executable, "-c", "pass"], env, folder)
        commands = {
            "--help": ["--help"],
            "ci tag": ["ci", "tag", "--ref", "refs/tags/v1.2.3"],
            "ci detect": ["ci", "detect", "--base", "HEAD", "--head", "HEAD"],
            "status": ["status"],
            "runs list": ["runs", "list"],
        }
        found = {name: median([EXE, *args], env, folder) for name, args in commands.items()}
    goals = {"--help": 0.100, "ci tag": 0.120, "ci detect": 0.120, "status": 0.300,
             "runs list": 0.300}  # fmt: skip
    print(json.dumps({
        "runs": RUNS,
        "pythonFloorMs": round(floor * 1000, 1),
        "commands": {
            name: {"medianMs": round(t * 1000, 1), "ratioToFloor": round(t / floor, 1),
                   "goalMs": goals[name] * 1000, "met": t < goals[name]}
            for name, t in found.items()
        },
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
