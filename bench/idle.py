"""Idle cost: CPU of a worker and the 22 QuikApp services on the local target while nothing
happens, as % of one core (CPU seconds / wall seconds, summed over the worker and all its
descendant processes, read from /proc).

Measured in the same run, as the baseline: the same 22 workload processes started bare
(without shipline), idle for the same time: what the services cost on their own.
Goal: the worker and its services under 1 % of one core.
Run: .venv/bin/python bench/idle.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shipline.targets.local.supervisor import free_port
from shipline.targets.local.target import WORKLOAD

ROOT = Path(__file__).resolve().parents[1]

QUIKAPP = ROOT / "examples" / "quikapp" / "shipline.yaml"
EXE = str(Path(sys.executable).parent / "shipline")
TICKS = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def _idle_share(pids: list[int], seconds: float) -> float:
    before, start = _cpu_seconds(pids), time.monotonic()
    time.sleep(seconds)
    return 100 * (_cpu_seconds(pids) - before) / (time.monotonic() - start)


def bare(seconds: float) -> float:
    """The 22 workloads alone (the floor)."""
    processes = []
    try:
        for index in range(22):
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [
                        *WORKLOAD,
                        "--service",
                        f"s{index}",
                        "--version",
                        "1",
                        "--health",
                        "/health",
                        "--port",
                        str(port),
                    ],
                    stdout=subprocess.DEVNULL,
                )
            )
            for _ in range(200):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                        break
                except OSError:
                    time.sleep(0.02)
        time.sleep(2)
        return _idle_share([p.pid for p in processes], seconds)
    finally:
        for process in processes:
            process.terminate()
            process.wait()


def shipline(seconds: float) -> float:
    """A worker serving the 22 QuikApp services deployed to `local`, nothing running."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "SHIPLINE_CONFIG": str(QUIKAPP), "SHIPLINE_HOME": home}
        env.pop("SHIPLINE_DATABASE_URL", None)
        subprocess.run(
            [EXE, "secrets", "generate", "--env", "local"], env=env, check=True,
            capture_output=True,
        )  # fmt: skip
        with open(Path(home) / "worker.log", "wb") as log:
            worker = subprocess.Popen([EXE, "worker"], env=env, stdout=log, stderr=log)
        try:
            done = subprocess.run(
                [EXE, "deploy", "--env", "local", "--services", "all", "--tag", "1.0.0"],
                env=env, capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"deploy failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
            time.sleep(5)  # let the deploy's after-effects settle
            pids = _tree(worker.pid)
            return _idle_share(pids, seconds)
        finally:
            subprocess.run(
                [EXE, "down", "--env", "local"], env=env, capture_output=True, check=False
            )
            worker.terminate()
            worker.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    floor = bare(args.seconds)
    total = shipline(args.seconds)
    print(
        json.dumps(
            {
                "seconds": args.seconds,
                "bareServicesPercentOfOneCore": round(floor, 2),
                "workerAndServicesPercentOfOneCore": round(total, 2),
                "shiplineOverheadPercentOfOneCore": round(total - floor, 2),
                "goalPercent": 1.0,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
