"""Deploy speed: the 22 QuikApp services to one local environment, one replica each.

Measured in the same run:
  - the services' own start-up: each workload process started and polled until healthy, one
    after another, without shipline (the floor);
  - shipline's deploy through the local target (rolling apply, gateway, supervision) of the same 22;
  - the overhead: the difference, in total and per service;
  - a worker restart: a new target re-creating all 22 from the state file (what a worker does
    when it starts after a stop or a `kill -9`).
Run: .venv/bin/python bench/deploy.py
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shipline.config.loader import load_config
from shipline.domain.deploy import DeploySpec as ServiceSpec
from shipline.targets.local.supervisor import free_port, http_status
from shipline.targets.local.target import WORKLOAD, LocalTarget

QUIKAPP = Path(__file__).resolve().parents[1] / "examples" / "quikapp" / "shipline.yaml"


def bare(services: list[tuple[str, str]]) -> float:
    processes = []
    start = time.perf_counter()
    try:
        for name, health in services:
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [
                        *WORKLOAD,
                        "--service",
                        name,
                        "--version",
                        "1.0.0",
                        "--health",
                        health,
                        "--port",
                        str(port),
                    ],
                    stdout=subprocess.DEVNULL,
                )
            )
            while True:  # probed as the local target probes a new replica (client, interval)
                try:
                    if 200 <= http_status(port, health, 1) < 300:
                        break
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(0.01)
        return time.perf_counter() - start
    finally:
        for process in processes:
            process.terminate()
            process.wait()


def with_shipline(services: list[tuple[str, str]]) -> tuple[float, float]:
    """(deploy seconds, restore seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        target = LocalTarget(Path(tmp))
        try:
            start = time.perf_counter()
            for name, health in services:
                target.apply(ServiceSpec("local", name, "1.0.0", health_path=health))
            deployed = time.perf_counter() - start
            target.write_state()
        finally:
            target.close()
        successor = LocalTarget(Path(tmp))
        try:
            start = time.perf_counter()
            problems = successor.restore(lambda environment, service, parameters: {})
            restored = time.perf_counter() - start
            assert not problems and len(successor.services()) == len(services), problems
        finally:
            successor.close()
        return deployed, restored


def main() -> None:
    config = load_config(QUIKAPP)
    services = [(s.name, config.service_health_path(s)) for s in config.services]
    floor = min(bare(services) for _ in range(2))
    runs = [with_shipline(services) for _ in range(2)]
    ours = min(r[0] for r in runs)
    restore = min(r[1] for r in runs)
    print(
        json.dumps(
            {
                "services": len(services),
                "servicesOwnStartupSeconds": round(floor, 2),
                "shiplineDeploySeconds": round(ours, 2),
                "overheadSeconds": round(ours - floor, 2),
                "overheadPerServiceMs": round((ours - floor) / len(services) * 1000, 1),
                "ratio": round(ours / floor, 2),
                "restoreAfterRestartSeconds": round(restore, 2),
                "restoreRatio": round(restore / floor, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
