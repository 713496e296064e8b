"""Load gate: N requests to each service; p50/p90/p95/p99 recorded, p95 held to a threshold."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from _report import write

parser = argparse.ArgumentParser()
parser.add_argument("--requests", type=int, default=100)
parser.add_argument("--p95-ms", type=float, required=True)
args = parser.parse_args()
addresses = json.loads(os.environ["SHIPLINE_ADDRESSES"])
cases: list[tuple[str, str | None]] = []
summary = {}
for service in sorted(json.loads(os.environ["SHIPLINE_VERSIONS"])):
    took, errors = [], 0
    for _ in range(args.requests):
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(f"{addresses[service]}/api/echo", timeout=5) as r:
                r.read()
        except OSError:
            errors += 1
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    cut = {q: took[min(len(took) - 1, int(len(took) * q / 100))] for q in (50, 90, 95, 99)}
    summary[service] = {f"p{q}": round(v, 2) for q, v in cut.items()} | {"errors": errors}
    failure = None
    if errors:
        failure = f"{errors} failed request(s)"
    elif cut[95] > args.p95_ms:
        failure = f"p95 {cut[95]:.1f} ms above {args.p95_ms:g} ms"
    cases.append((service, failure))
    print(
        f"load {service}: p50 {cut[50]:.1f} p90 {cut[90]:.1f} p95 {cut[95]:.1f} "
        f"p99 {cut[99]:.1f} ms, {errors} error(s)"
    )
with open(os.path.join(os.environ["SHIPLINE_ARTIFACTS"], "load.json"), "w") as out:
    json.dump(summary, out)
write("load", cases)
sys.exit(1 if any(f for _, f in cases) else 0)
