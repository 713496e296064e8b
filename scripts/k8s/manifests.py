"""Write the reference Kubernetes manifests of a shipline project: a Kustomize base per service and
an overlay per Kubernetes environment, with the tier's replicas and resources.

    .venv/bin/python scripts/k8s/manifests.py examples/quikapp [--check]

Layout under PROJECT/k8s/:
  base/SERVICE/      Deployment (probes on the service's health path and port, non-root, requests
                     and limits), Service, ServiceAccount, HorizontalPodAutoscaler
  components/TIER/   the tier's requests, limits, min/max replicas and CPU target (a Component)
  overlays/ENV/      namespace, the services, the tier, and PodDisruptionBudgets where the tier
                     asks for them

Images are named by the service (`quikapp/auth-service`) with no tag: the tag is set per deploy
from the release (Kustomize `images:`), never by editing these files. `--check` exits 1 when the
files on disk differ from what this writes (a test runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from shipline.config.loader import load_config  # noqa: E402
from shipline.domain.models import Config, Resources  # noqa: E402

HEADER = "# Written by scripts/k8s/manifests.py from the shipline configuration; edit that.\n"
LABEL = "app.kubernetes.io/name"


def _scaled(quantity: str, factor: int) -> str:
    """`100m` x 5 = `500m`; `256Mi` x 2 = `512Mi`."""
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", quantity)
    if not match:
        return quantity
    return f"{int(match.group(1)) * factor}{match.group(2)}"


def _base(config: Config, name: str) -> dict[str, Any]:
    service = config.service(name)
    port = config.service_port(service)
    health = service.health_path or config.stacks[service.stack].health_path
    image = service.image or f"{config.project}/{name}"
    labels = {LABEL: name, "app.kubernetes.io/part-of": config.project}
    probe = {"httpGet": {"path": health, "port": "http"}, "periodSeconds": 5}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 300,
            "selector": {"matchLabels": {LABEL: name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": name,
                            "image": image,
                            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                            "env": [{"name": "PORT", "value": str(port)}],
                            "readinessProbe": {**probe, "initialDelaySeconds": 2},
                            "livenessProbe": {
                                **probe,
                                "initialDelaySeconds": 10,
                                "failureThreshold": 3,
                            },
                            "resources": _resources(Resources()),
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }
    return {
        "deployment.yaml": deployment,
        "service.yaml": {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "selector": {LABEL: name},
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        },
        "serviceaccount.yaml": {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "labels": labels},
            "automountServiceAccountToken": False,
        },
        "hpa.yaml": {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": 1,
                "maxReplicas": 3,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 80},
                        },
                    }
                ],
            },
        },
        "kustomization.yaml": {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["serviceaccount.yaml", "deployment.yaml", "service.yaml", "hpa.yaml"],
        },
    }


def _resources(tier: Resources) -> dict[str, Any]:
    return {
        "requests": {"cpu": tier.cpu_request, "memory": tier.memory_request},
        "limits": {"cpu": _scaled(tier.cpu_request, 5), "memory": _scaled(tier.memory_request, 2)},
    }


def _component(tier: Resources) -> dict[str, Any]:
    """A Component that gives every Deployment and HPA the tier's figures."""
    minimum = max(tier.min_replicas, 1)
    return {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1",
        "kind": "Component",
        "patches": [
            {
                "target": {"kind": "Deployment"},
                "patch": yaml.safe_dump(
                    [
                        {"op": "replace", "path": "/spec/replicas", "value": minimum},
                        {
                            "op": "replace",
                            "path": "/spec/template/spec/containers/0/resources",
                            "value": _resources(tier),
                        },
                    ],
                    sort_keys=False,
                ),
            },
            {
                "target": {"kind": "HorizontalPodAutoscaler"},
                "patch": yaml.safe_dump(
                    [
                        {"op": "replace", "path": "/spec/minReplicas", "value": minimum},
                        {"op": "replace", "path": "/spec/maxReplicas", "value": tier.max_replicas},
                        {
                            "op": "replace",
                            "path": "/spec/metrics/0/resource/target/averageUtilization",
                            "value": tier.cpu_target_utilization,
                        },
                    ],
                    sort_keys=False,
                ),
            },
        ],
    }


def files(config: Config) -> dict[str, str]:
    """Every manifest file, by its path under k8s/."""
    out: dict[str, Any] = {}
    for service in config.services:
        for name, doc in _base(config, service.name).items():
            out[f"base/{service.name}/{name}"] = doc
    for tier_name, tier in config.tiers.items():
        out[f"components/{tier_name}/kustomization.yaml"] = _component(tier.resources)
    kube_targets = {n for n, t in config.targets.items() if t.type == "kubernetes"}
    for env in config.environments:
        if env.target not in kube_targets:
            continue
        tier = config.tiers[env.tier].resources
        resources = ["namespace.yaml", *(f"../../base/{s.name}" for s in config.services)]
        folder = f"overlays/{env.name}"
        out[f"{folder}/namespace.yaml"] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": env.namespace, "labels": {"shipline.dev/environment": env.name}},
        }
        if tier.pod_disruption_budget:
            resources.append("pdb.yaml")
            out[f"{folder}/pdb.yaml"] = [
                {
                    "apiVersion": "policy/v1",
                    "kind": "PodDisruptionBudget",
                    "metadata": {"name": s.name},
                    "spec": {
                        "minAvailable": max(tier.min_replicas - 1, 1),
                        "selector": {"matchLabels": {LABEL: s.name}},
                    },
                }
                for s in config.services
            ]
        out[f"{folder}/kustomization.yaml"] = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": env.namespace,
            "labels": [
                {"pairs": {"shipline.dev/environment": env.name}, "includeSelectors": False}
            ],
            "resources": resources,
            "components": [f"../../components/{env.tier}"],
        }
    rendered: dict[str, str] = {}
    for path, doc in out.items():
        docs = doc if isinstance(doc, list) else [doc]
        rendered[path] = HEADER + "---\n".join(
            yaml.safe_dump(d, sort_keys=False, width=100) for d in docs
        )
    return rendered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 when the files differ")
    args = parser.parse_args()
    config = load_config(args.project / "shipline.yaml")
    wanted = files(config)
    root = args.project / "k8s"
    on_disk = {str(p.relative_to(root)): p.read_text() for p in root.rglob("*.yaml")}
    if args.check:
        differ = sorted(set(wanted.items()) ^ set(on_disk.items()))
        for path in sorted({p for p, _ in differ}):
            print(f"differs: k8s/{path}")
        return 1 if differ else 0
    for stale in set(on_disk) - set(wanted):
        (root / stale).unlink()
    for path, text in wanted.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    print(f"wrote {len(wanted)} files under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
