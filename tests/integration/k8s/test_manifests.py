"""The reference Kubernetes manifests (examples/quikapp/k8s): current with the configuration,
every overlay rendered by `kubectl kustomize`, and every rendered object valid for a current
Kubernetes (1.37) and, with the API versions an older cluster serves, for the 1.20 API server
that the tests run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shipline.targets.kubernetes.apiversions import adapt

ROOT = Path(__file__).parents[3]
K8S = ROOT / "examples" / "quikapp" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir())
CURRENT = "1.37.0"
# What a 1.20 API server's discovery lists (the groups these manifests use).
SERVED_1_20 = {"v1", "apps/v1", "autoscaling/v1", "autoscaling/v2beta2", "policy/v1beta1"}


def _render(overlay: str) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (it renders the Kustomize overlays)")
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_the_manifests_are_what_the_configuration_says() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "k8s" / "manifests.py"), str(K8S.parent), "--check"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"run scripts/k8s/manifests.py examples/quikapp:\n{done.stdout}"


def test_every_kubernetes_environment_has_an_overlay() -> None:
    assert OVERLAYS == ["dev", "live", "qa", "staging", "uat1", "uat2", "uat3"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_overlay_renders_with_its_namespace_tier_and_probes(overlay: str) -> None:
    docs = _render(overlay)
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Deployment") == kinds.count("Service") == 22
    assert kinds.count("HorizontalPodAutoscaler") == kinds.count("ServiceAccount") == 22
    assert kinds.count("PodDisruptionBudget") == (22 if overlay == "live" else 0)
    namespace = next(d for d in docs if d["kind"] == "Namespace")["metadata"]["name"]
    assert namespace == ("quikapp" if overlay == "live" else f"quikapp-{overlay}")
    assert all(
        d["metadata"].get("namespace") == namespace for d in docs if d["kind"] != "Namespace"
    )
    auth = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "auth-service"
    )
    container = auth["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/actuator/health", "port": "http"}
    assert container["ports"] == [{"containerPort": 8080, "name": "http", "protocol": "TCP"}]
    assert auth["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    tier = {"dev": (1, 3), "qa": (1, 3), "live": (3, 20)}.get(overlay, (2, 8))
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == tier
    assert auth["spec"]["replicas"] == tier[0]
    assert ":" not in container["image"], "the tag is set per deploy, never in the files"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_is_valid_for_a_current_kubernetes(overlay: str) -> None:
    for doc in _render(overlay):
        kubernetes_validate.validate(doc, CURRENT, strict=True)


def test_every_rendered_object_is_valid_for_the_1_20_api_server(tmp_path: Path) -> None:
    """kubernetes-validate's current release no longer ships 1.20's schemas: the 1.28 release,
    which does, runs beside ours (uv fetches it from the package registry). One overlay per
    tier: the others differ from it only in their namespace."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (it runs kubernetes-validate 1.28 for 1.20's schemas)")
    files = []
    for overlay in ("dev", "uat1", "live"):  # nonprod, preprod, prod
        for i, doc in enumerate(adapt(_render(overlay), SERVED_1_20)):
            path = tmp_path / f"{overlay}-{i}.json"
            path.write_text(json.dumps(doc))
            files.append(str(path))
    done = subprocess.run(
        [uv, "run", "--isolated", "--no-project", "--python", sys.executable,
         "--with", "kubernetes-validate==1.28.3", "kubernetes-validate", "-k", "1.20.0",
         "--strict", "--quiet", *files],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
