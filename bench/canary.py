"""Canary rollback speed: from a bad canary receiving traffic to rollback complete.

A stable version (2 replicas) serves a client that sends requests continuously; a canary that
fails half its requests gets 50 % of the traffic; analysis runs every 1 s with failure limit 2.
Measured: first canary response seen by the client → canary removed and all traffic on stable.
Baseline for scale: Flagger's default analysis interval is 60 s (two failed intervals: 120 s).
Goal: under 5 s.

Run: .venv/bin/python bench/canary.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shipline.domain.models import AnalysisThresholds
from shipline.errors import CheckFailed
from shipline.targets.local.target import LocalTarget, ServiceSpec


def once(folder: Path) -> dict[str, float]:
    target = LocalTarget(folder)
    try:
        target.apply(ServiceSpec("bench", "api", "1.0.0", replicas=2))
        port = target.status("bench", "api")["gatewayPort"]
        first_canary: list[float] = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/api/echo", timeout=5
                    ) as response:
                        version = response.headers["X-Shipline-Version"]
                except urllib.error.HTTPError as exc:
                    version = exc.headers["X-Shipline-Version"]
                if version == "2.0.0" and not first_canary:
                    first_canary.append(time.perf_counter())
                time.sleep(0.005)

        thread = threading.Thread(target=client)
        thread.start()
        thresholds = AnalysisThresholds(max_error_rate=0.05, failure_limit=2, interval_seconds=1)
        try:
            target.canary(
                ServiceSpec(
                    "bench", "api", "2.0.0", replicas=2, env={"SHIPLINE_DEMO_ERROR_RATE": "0.5"}
                ),
                thresholds,
                steps=[50, 100],
                bake_seconds=30,
            )
            raise SystemExit("the bad canary was promoted")
        except CheckFailed:
            done = time.perf_counter()
        stop.set()
        thread.join()
        return {"secondsToRollback": round(done - first_canary[0], 2)}
    finally:
        target.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(once(Path(tmp))["secondsToRollback"])
    best, worst = min(results), max(results)
    print(
        json.dumps(
            {
                "analysisIntervalSeconds": 1,
                "failureLimit": 2,
                "runs": results,
                "bestSeconds": best,
                "worstSeconds": worst,
                "flaggerDefaultSeconds": 120,
                "ratioToFlaggerDefault": round(worst / 120, 3),
                "goal": {"under5s": worst < 5},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
