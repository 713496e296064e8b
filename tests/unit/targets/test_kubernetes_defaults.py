"""A tier's resource defaults on the kubernetes target: a container that names no CPU or memory
of its own requests the tier's, an autoscaler that names no metric scales on the tier's CPU
utilization, and whatever the overlay names stays as it is."""

from __future__ import annotations

from typing import Any

import pytest

from shipline.domain.deploy import DeploySpec
from shipline.targets.kubernetes.target import _default_requests, _scale_on_cpu

TIER = DeploySpec("dev", "api", "1.0.0", cpu_request="50m", memory_request="128Mi", cpu_target=70)


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (None, {"requests": {"cpu": "50m", "memory": "128Mi"}}),
        ({"requests": {"cpu": "1"}}, {"requests": {"cpu": "1", "memory": "128Mi"}}),
        ({"requests": {"cpu": "1", "memory": "1Gi"}}, {"requests": {"cpu": "1", "memory": "1Gi"}}),
        # a limit alone is the request too (Kubernetes' own rule): the tier's would exceed it
        ({"limits": {"cpu": "20m"}}, {"limits": {"cpu": "20m"}, "requests": {"memory": "128Mi"}}),
        (
            {"limits": {"cpu": "20m", "memory": "64Mi"}},
            {"limits": {"cpu": "20m", "memory": "64Mi"}},
        ),
    ],
)
def test_a_container_requests_the_tiers_cpu_and_memory_where_it_names_none(
    resources: dict[str, Any] | None, expected: dict[str, Any]
) -> None:
    container: dict[str, Any] = {"name": "api"}
    if resources is not None:
        container["resources"] = resources
    _default_requests(container, TIER)
    assert container.get("resources") == expected


def test_a_spec_without_tier_defaults_leaves_the_container_alone() -> None:
    container: dict[str, Any] = {"name": "api"}
    _default_requests(container, DeploySpec("dev", "api", "1.0.0"))
    assert container == {"name": "api"}


CPU_70 = [{"type": "Resource",
           "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]  # fmt: skip
MEMORY = [{"type": "Resource",
           "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 90}}}]  # fmt: skip


@pytest.mark.parametrize(
    ("hpa", "expected"),
    [
        ({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 3}},
         {"maxReplicas": 3, "metrics": CPU_70}),
        ({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 3, "metrics": MEMORY}},
         {"maxReplicas": 3, "metrics": MEMORY}),
        ({"apiVersion": "autoscaling/v2beta1", "spec": {"maxReplicas": 3}},
         {"maxReplicas": 3, "metrics": [{"type": "Resource", "resource": {
             "name": "cpu", "targetAverageUtilization": 70}}]}),
        ({"apiVersion": "autoscaling/v1", "spec": {"maxReplicas": 3}},
         {"maxReplicas": 3, "targetCPUUtilizationPercentage": 70}),
        ({"apiVersion": "autoscaling/v1",
          "spec": {"maxReplicas": 3, "targetCPUUtilizationPercentage": 50}},
         {"maxReplicas": 3, "targetCPUUtilizationPercentage": 50}),
    ],
)  # fmt: skip
def test_an_autoscaler_without_a_metric_scales_on_the_tiers_cpu_utilization(
    hpa: dict[str, Any], expected: dict[str, Any]
) -> None:
    _scale_on_cpu(hpa, 70)
    assert hpa["spec"] == expected
