"""Deploys through the CLI and a worker to the `kubernetes` target on the test control plane
(scripts/test starts it): deploy, upgrade, verify, roll back, restart and scale a service; each a
run of the engine whose effect the API server holds (Deployment revisions, ready pods). The
Deployment's container, which names no resources, requests the tier's CPU and memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.kube import kubeconfig, objects
from tests.e2e.worker import running_worker, sh

PROJECT = """
project: k8s-e2e
stacks:
  python: {port: 8000, healthPath: /health}
services:
  - {name: orders, stack: python, image: shipline/orders}
tiers:
  nonprod: {resources: {minReplicas: 1, maxReplicas: 3, cpuRequest: 20m, memoryRequest: 48Mi}}
targets:
  cluster: {type: kubernetes}
environments:
  - {name: e2e, cluster: test, namespace: shipline-e2e, tier: nonprod, target: cluster}
ladder: [e2e]
"""


@pytest.fixture
def kube_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBECONFIG", kubeconfig())
    project = tmp_path / "shipline.yaml"
    project.write_text(PROJECT)
    return project


def _status(env: dict[str, str]) -> dict[str, object]:
    rows = json.loads(sh(env, "status", "--env", "e2e", "--json").stdout)
    return {str(k): v for k, v in rows[0].items()}


def test_deploy_upgrade_rollback_restart_scale(kube_env: Path, tmp_path: Path) -> None:
    with running_worker(kube_env, tmp_path / "state", "dev", tmp_path / "worker.log") as env:
        try:
            first = sh(env, "deploy", "--env", "e2e", "--services", "orders", "--tag", "1.0.0",
                       "--json")  # fmt: skip
            assert first.returncode == 0, first.stdout + first.stderr
            deployment = objects("deployments", "shipline-e2e")["orders"]
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            assert container["resources"] == {"requests": {"cpu": "20m", "memory": "48Mi"}}
            second = sh(env, "deploy", "--env", "e2e", "--services", "orders", "--tag", "1.1.0",
                        "--json")  # fmt: skip
            assert second.returncode == 0, second.stdout + second.stderr
            shown = json.loads(second.stdout)
            assert {s["name"]: s["phase"] for s in shown["stages"]}["verify"] == "succeeded"
            state = _status(env)
            assert (state["version"], state["revision"]) == ("1.1.0", 2), state
            back = sh(env, "rollback", "--env", "e2e", "--services", "orders", "--revision",
                      "1", "--json")  # fmt: skip
            assert back.returncode == 0, back.stdout + back.stderr
            assert _status(env)["version"] == "1.0.0"
            assert sh(env, "restart", "--env", "e2e", "--services", "orders").returncode == 0
            scaled = sh(env, "scale", "--env", "e2e", "--services", "orders", "--replicas", "2")
            assert scaled.returncode == 0, scaled.stdout + scaled.stderr
            state = _status(env)
            assert (state["version"], state["ready"], state["desired"]) == ("1.0.0", 2, 2), state
            history = json.loads(
                sh(env, "history", "--env", "e2e", "--service", "orders", "--json").stdout
            )
            assert [h["version"] for h in history][-1] == "1.0.0"
        finally:
            sh(env, "down", "--env", "e2e")
