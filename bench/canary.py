"""Canary speed and reliability through the engine, on the local target (real processes, the
gateway, a real worker and the CLI):

- `secondsToRollback`: from the moment the bad canary (50 % errors) takes traffic to the moment
  the run has removed it (1 s analysis interval, failure limit 2): the engine's durable steps,
  the gateway's counters and the probe requests together. Goal: under 5 s.
- the baseline in the same run: the analysis's floor, `failureLimit x intervalSeconds` (2 s):
  what no implementation can beat with these settings; the ratio says what the engine adds.
- with `--rounds N`: N good and N bad canaries in turn; every good one must be promoted and
  every bad one rolled back. `--load` keeps one core busy in a second process meanwhile.

Run: .venv/bin/python bench/canary.py [--rounds 20] [--load]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

EXE = str(Path(sys.executable).parent / "shipline")
INTERVAL, FAILURE_LIMIT = 1.0, 2
PROJECT = f"""\
project: canary-bench
stacks:
  python: {{port: 8000, healthPath: /health}}
services:
  - {{name: api, stack: python}}
tiers:
  nonprod: {{resources: {{minReplicas: 1, maxReplicas: 5}}}}
targets:
  here: {{type: local}}
environments:
  - name: bench
    cluster: local
    namespace: bench
    tier: nonprod
    target: here
    strategy:
      type: canary
      steps: [50, 100]
      bakeSeconds: 3
      analysis: {{maxErrorRate: 0.05, failureLimit: {FAILURE_LIMIT}, intervalSeconds: {INTERVAL}}}
ladder: [bench]
"""


def _sh(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _deploy(env: dict[str, str], tag: str, *extra: str) -> dict[str, Any]:
    done = _sh(env, "deploy", "--env", "bench", "--services", "api", "--tag", tag, "--json", *extra)
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def _rollback_seconds(env: dict[str, str], run: int) -> float:
    """From the canary taking traffic (its weight set) to the canary step's end."""
    logs = json.loads(_sh(env, "runs", "logs", str(run), "--json").stdout)["logs"]
    weighted = next(e for e in logs if "set weight" in e["line"])
    removed = next(e for e in logs if "removed; all traffic on" in e["line"])
    start = datetime.fromisoformat(weighted["at"])
    return (datetime.fromisoformat(removed["at"]) - start).total_seconds()


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--load", action="store_true", help="keep one core busy meanwhile")
    args = parser.parse_args()
    load = None
    if args.load:
        load = multiprocessing.Process(target=_busy, args=(3600,), daemon=True)
        load.start()
    with tempfile.TemporaryDirectory() as home:
        (Path(home) / "shipline.yaml").write_text(PROJECT)
        env = {**os.environ, "SHIPLINE_CONFIG": str(Path(home) / "shipline.yaml")}
        env["SHIPLINE_HOME"] = home
        env.pop("SHIPLINE_DATABASE_URL", None)
        with open(Path(home) / "worker.log", "wb") as log:
            worker = subprocess.Popen([EXE, "worker"], env=env, stdout=log, stderr=log)
        promoted = rolled_back = 0
        seconds: list[float] = []
        try:
            assert _deploy(env, "1.0.0")["phase"] == "succeeded"
            for round_ in range(args.rounds):
                good = _deploy(env, f"2.{round_}.0")
                promoted += good["phase"] == "succeeded"
                bad = _deploy(env, f"3.{round_}.0", "--set", "shiplineDemoErrorRate=0.5")
                if bad["phase"] == "failed" and "rolled back" in (bad["reason"] or ""):
                    rolled_back += 1
                    seconds.append(_rollback_seconds(env, bad["id"]))
        finally:
            _sh(env, "down", "--env", "bench")
            worker.terminate()
            worker.wait(timeout=60)
            if load is not None:
                load.terminate()
    floor = FAILURE_LIMIT * INTERVAL
    worst = max(seconds) if seconds else None
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "load": args.load,
                "goodPromoted": f"{promoted}/{args.rounds}",
                "badRolledBack": f"{rolled_back}/{args.rounds}",
                "secondsToRollbackWorst": worst,
                "secondsToRollbackMedian": sorted(seconds)[len(seconds) // 2] if seconds else None,
                "baselineSeconds": floor,
                "ratioToBaseline": round(worst / floor, 2) if worst else None,
                "goalSeconds": 5,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
