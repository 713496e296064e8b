"""Latency through the local target's gateway: what a load gate, a smoke test or a canary's
analysis measures when it sends requests to a service deployed on the local target.

A demo workload process and a gateway in front of it, as the local target runs them. Measured in
the same run, each on one kept-alive connection (as k6 and the canary's probes send them):
  - the floor: requests straight to the replica;
  - requests through the gateway (which keeps its own connections to the replica alive);
  - the gateway's own latency per request: the difference of the medians.
Run: .venv/bin/python bench/gateway.py [REQUESTS]
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shipline.targets.local.gateway import Gateway
from shipline.targets.local.supervisor import free_port, http_status
from shipline.targets.local.target import WORKLOAD

REQUESTS = int(sys.argv[1]) if len(sys.argv) > 1 else 400


def latencies(port: int, count: int) -> list[float]:
    """Milliseconds of `count` GET / on one kept-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    took = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            connection.request("GET", "/")
            answer = connection.getresponse()
            answer.read()
            took.append((time.perf_counter() - start) * 1000)
            assert answer.status == 200, answer.status
    finally:
        connection.close()
    return took


def percentiles(took: list[float]) -> dict[str, float]:
    cut = statistics.quantiles(took, n=100)
    return {"p50": round(cut[49], 3), "p95": round(cut[94], 3), "p99": round(cut[98], 3)}


def main() -> None:
    port = free_port()
    replica = subprocess.Popen(
        [*WORKLOAD, "--service", "api", "--version", "1.0.0", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    gateway = Gateway(0)
    try:
        end = time.monotonic() + 10
        while True:
            try:
                if http_status(port, "/health", 1) == 200:
                    break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.01)
        gateway.start()
        gateway.route({"1.0.0": [port]}, {"1.0.0": 100})
        latencies(port, 20), latencies(gateway.port, 20)  # warm both paths
        straight, through = latencies(port, REQUESTS), latencies(gateway.port, REQUESTS)
    finally:
        gateway.stop()
        replica.terminate()
        replica.wait()
    floor, ours = percentiles(straight), percentiles(through)
    print(json.dumps({
        "requests": REQUESTS,
        "straightToReplicaMs": floor,
        "throughGatewayMs": ours,
        "gatewayOwnMsP50": round(ours["p50"] - floor["p50"], 3),
        "ratioP50": round(ours["p50"] / floor["p50"], 2),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
