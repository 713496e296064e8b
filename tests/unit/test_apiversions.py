"""API versions chosen by what the cluster serves, never assumed."""

from __future__ import annotations

import pytest

from shipline.errors import TargetError
from shipline.targets.kubernetes.apiversions import adapt

HPA = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "a"}}
PDB = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "a"}}


def test_a_served_version_is_kept() -> None:
    assert adapt([HPA, PDB], {"autoscaling/v2", "policy/v1"}) == [HPA, PDB]


def test_an_older_cluster_gets_the_version_it_serves() -> None:
    adapted = adapt([HPA, PDB], {"autoscaling/v2beta2", "policy/v1beta1"})
    assert [d["apiVersion"] for d in adapted] == ["autoscaling/v2beta2", "policy/v1beta1"]
    assert HPA["apiVersion"] == "autoscaling/v2"  # the input is left as it was


def test_a_version_nothing_replaces_is_named() -> None:
    with pytest.raises(TargetError, match="HorizontalPodAutoscaler a"):
        adapt([HPA], {"autoscaling/v1"})
