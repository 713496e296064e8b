"""A preview's field-level changes between two renderings of one object."""

from __future__ import annotations

from shipline.domain.deploy import FieldChange, field_changes


def test_named_lists_are_compared_item_by_item_and_only_differences_show() -> None:
    live = {"spec": {"replicas": 2, "containers": [
        {"name": "api", "image": "api:1", "env": [{"name": "A", "value": "1"}]},
        {"name": "proxy", "image": "envoy:1"}]}}  # fmt: skip
    dry = {"spec": {"replicas": 3, "containers": [
        {"name": "proxy", "image": "envoy:1"},
        {"name": "api", "image": "api:2", "env": [{"name": "A", "value": "1"},
                                                  {"name": "B", "value": "2"}]}]}}  # fmt: skip
    assert field_changes("Deployment/api", live, dry) == [
        FieldChange("Deployment/api", "spec.containers[api].env[B].name", None, "B"),
        FieldChange("Deployment/api", "spec.containers[api].env[B].value", None, "2"),
        FieldChange("Deployment/api", "spec.containers[api].image", "api:1", "api:2"),
        FieldChange("Deployment/api", "spec.replicas", 2, 3),
    ]
    assert field_changes("Deployment/api", live, live) == []
