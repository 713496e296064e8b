"""Kubernetes deploy speed: the 22 QuikApp services applied and verified in one namespace of a
real API server (the test control plane and its node agent), through the dev overlay.

Measured in the same run, on the same cluster:
  - the baseline: what the spec's pipeline does with kubectl — `kubectl apply --server-side` of
    the rendered overlay (image tags set), then `kubectl rollout status` of each Deployment;
  - shipline: the kubernetes target's apply (render, Secret, server-side apply, rollout status as
    kubectl computes it) and health verification (the six checks), one service after another as
    a deploy stage runs them;
  - for shipline: API requests per service, and where the time went — its own work (rendering,
    requests, checks) versus waiting for the cluster's controllers (the pauses between rollout
    polls while pods start and become ready).
Both a first deploy (objects created) and an upgrade (a new tag: a rolling update) are timed.

Needs the control plane and node agent: `bash scripts/k8s/control-plane.sh start` and
`.venv/bin/python -m shipline.targets.kubernetes.nodeagent --kubeconfig
/tmp/shipline-k8s/kubeconfig &` (or run inside `scripts/test`'s environment).
Run: KUBECONFIG=/tmp/shipline-k8s/kubeconfig .venv/bin/python bench/k8s.py [MAX_PARALLEL]
(default: the dev environment's `maxParallel`; 1 deploys one service after another).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ruamel.yaml import YAML

from shipline.config.loader import load_config
from shipline.domain.deploy import DeploySpec
from shipline.domain.health import HealthBounds, healthy, verify_health
from shipline.domain.ports import TargetContext
from shipline.targets.kubernetes import target as k8s
from shipline.targets.kubernetes.apiversions import adapt

ROOT = Path(__file__).resolve().parents[1]
QUIKAPP = ROOT / "examples" / "quikapp"
OVERLAY = "k8s/overlays/{environment}"


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, *args], input=stdin, capture_output=True,
        text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args[:3])}: {done.stderr.strip()[:400]}")
    return done.stdout


def drop(kubeconfig: str, namespace: str) -> None:
    kubectl(kubeconfig, "delete", "namespace", namespace, "--ignore-not-found", "--wait=true",
            "--timeout=180s")  # fmt: skip


def baseline(kubeconfig: str, namespace: str, tag: str, services: list[str]) -> float:
    """kubectl: apply the rendered overlay server-side, then wait for each rollout."""
    rendered = kubectl(kubeconfig, "kustomize", str(QUIKAPP / "k8s" / "overlays" / "dev"))
    served = set(kubectl(kubeconfig, "api-versions").split())
    # The manifests are written for a current cluster; the same API versions are chosen for
    # kubectl as shipline chooses by discovery (kubectl alone would refuse autoscaling/v2).
    docs = adapt([d for d in YAML(typ="safe").load_all(rendered) if d], served)
    out: list[dict[str, Any]] = []
    for doc in docs:
        if doc["kind"] == "Namespace":
            doc["metadata"]["name"] = namespace
        else:
            doc["metadata"]["namespace"] = namespace
        if doc["kind"] == "Deployment":
            container = doc["spec"]["template"]["spec"]["containers"][0]
            container["image"] = f"{container['image'].split(':')[0]}:{tag}"
        out.append(doc)
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": out})
    start = time.perf_counter()
    kubectl(kubeconfig, "apply", "--server-side", "--field-manager", "bench", "--force-conflicts",
            "-f", "-", stdin=manifest)  # fmt: skip
    for name in services:
        kubectl(kubeconfig, "rollout", "status", f"deployment/{name}", "-n", namespace,
                "--timeout=300s")  # fmt: skip
    return time.perf_counter() - start


class Meter:
    """Counts the target's API requests and kubectl runs, and the pauses between polls (summed
    over the threads that deploy services side by side)."""

    def __init__(self, target: k8s.KubernetesTarget) -> None:
        self.requests = 0
        self.kubectl = 0
        self.waiting = 0.0
        self.busy = 0.0  # thread-seconds inside apply and verify
        self._lock = threading.Lock()
        connect = target._connect

        def counted() -> Any:  # every thread's client counts its requests here
            client = connect()
            client._client._client.event_hooks["request"].append(self._request)
            return client

        target._connect = counted
        real_sleep, real_run = time.sleep, subprocess.run

        def sleep(seconds: float) -> None:
            with self._lock:
                self.waiting += seconds
            real_sleep(seconds)

        def run(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.kubectl += 1
            return real_run(*args, **kwargs)

        k8s.time.sleep = sleep  # type: ignore[attr-defined]
        k8s.subprocess.run = run  # type: ignore[attr-defined]

    def _request(self, request: Any) -> None:
        with self._lock:
            self.requests += 1

    def spent(self, seconds: float) -> None:
        with self._lock:
            self.busy += seconds


def shipline(
    target: k8s.KubernetesTarget, meter: Meter, namespace: str, tag: str, config: Any, wide: int
) -> dict[str, float]:
    """Apply and verify every service, `wide` at a time as the environment's deploy stage runs
    them (`maxParallel`); seconds spent and requests made."""
    tier = config.tiers["nonprod"].resources
    bounds = HealthBounds(min_replicas=tier.min_replicas or 1, max_replicas=tier.max_replicas)
    before = (meter.requests, meter.waiting, meter.kubectl, meter.busy)

    def one(service: Any) -> None:
        started = time.perf_counter()
        spec = DeploySpec(
            "dev", service.name, tag, namespace=namespace,
            health_path=config.service_health_path(service), env={"LOG_LEVEL": "info"},
        )  # fmt: skip
        target.apply(spec, cause=f"bench {tag}")
        checks = verify_health(target.health("dev", service.name, bounds))
        meter.spent(time.perf_counter() - started)
        if not healthy(checks):
            raise SystemExit(f"{service.name} not healthy: {checks}")

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=wide) as pool:
        list(pool.map(one, config.services))
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "requests": meter.requests - before[0],
        "waitingSeconds": meter.waiting - before[1],
        "kubectlRuns": meter.kubectl - before[2],
        "busySeconds": meter.busy - before[3],
    }


def main() -> int:
    kubeconfig = os.environ.get("KUBECONFIG") or os.environ.get("SHIPLINE_TEST_KUBECONFIG")
    if not kubeconfig:
        print("set KUBECONFIG to the test control plane's (see this file's docstring)")
        return 2
    config = load_config(QUIKAPP / "shipline.yaml")
    services = [s.name for s in config.services]
    settings = {"kubeconfig": kubeconfig, "manifests": OVERLAY, "project": str(QUIKAPP)}
    with tempfile.TemporaryDirectory() as state:
        target = k8s.create(TargetContext("kubernetes", Path(state), settings))
    meter = Meter(target)
    ours, theirs = "quikapp-bench", "quikapp-bench-kubectl"
    wide = (
        int(sys.argv[1]) if len(sys.argv) > 1 else config.environment("dev").strategy.max_parallel
    )  # type: ignore[union-attr]
    figures: dict[str, Any] = {"services": len(services), "maxParallel": wide}
    try:
        for ns in (ours, theirs):
            drop(kubeconfig, ns)
        for phase, tag in (("create", "1.0.0"), ("upgrade", "1.1.0")):
            kubectl_seconds = baseline(kubeconfig, theirs, tag, services)
            measured = shipline(target, meter, ours, tag, config, wide)
            own = measured["busySeconds"] - measured["waitingSeconds"]
            figures[phase] = {
                "kubectlSeconds": round(kubectl_seconds, 2),
                "shiplineSeconds": round(measured["seconds"], 2),
                "ratio": round(measured["seconds"] / kubectl_seconds, 2),
                "apiRequestsPerService": round(measured["requests"] / len(services), 1),
                "kubectlRunsPerService": round(measured["kubectlRuns"] / len(services), 2),
                "waitingOnControllersThreadSeconds": round(measured["waitingSeconds"], 2),
                "shiplineOwnThreadSeconds": round(own, 2),
                "shiplineOwnShare": round(own / measured["busySeconds"], 2),
            }
    finally:
        for ns in (ours, theirs):
            drop(kubeconfig, ns)
        target.close()
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
