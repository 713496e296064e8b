"""Infrastructure decisions without I/O: plan summaries, version constraints, the promotion
path and the destroy rules."""

from __future__ import annotations

from typing import Any

import pytest

from shipline.domain.infra import (
    InfraRefused,
    destroy_refusal,
    infra_path,
    output_reference,
    summarize_plan,
    version_allows,
    version_problem,
)
from shipline.domain.models import Infrastructure


def _change(address: str, *actions: str) -> dict[str, Any]:
    return {"address": address, "change": {"actions": list(actions)}}


def test_a_plan_summary_names_addresses_by_action_and_never_reads_values() -> None:
    doc = {
        "variables": {"token": {"value": "s3cr3t"}},
        "resource_changes": [
            _change("a.new", "create"),
            _change("a.edit", "update"),
            _change("a.swap", "delete", "create"),
            _change("a.swap2", "create", "delete"),
            _change("a.gone", "delete"),
            _change("a.same", "no-op"),
            _change("a.read", "read"),
        ],
        "output_changes": {"x": {"actions": ["update"]}, "y": {"actions": ["no-op"]}},
    }
    summary = summarize_plan(doc)
    assert summary.add == ("a.new",)
    assert summary.change == ("a.edit",)
    assert summary.replace == ("a.swap", "a.swap2")
    assert summary.destroy == ("a.gone",)
    assert summary.outputs == ("x",)
    assert summary.line() == "Plan: 3 to add, 1 to change, 3 to destroy"
    assert "s3cr3t" not in str(summary.to_json())
    assert summarize_plan({"resource_changes": [_change("a", "no-op")]}).empty


@pytest.mark.parametrize(
    ("version", "constraint", "allowed"),
    [
        ("1.11.4", ">= 1.5.7", True),
        ("1.5.6", ">= 1.5.7", False),
        ("1.11.4", ">= 1.5.7, < 2.0.0", True),
        ("2.0.0", ">= 1.5.7, < 2.0.0", False),
        ("1.11.4", "1.11.4", True),
        ("1.11.4", "= 1.11.3", False),
        ("1.11.4", "!= 1.11.4", False),
        ("1.11.4", "~> 1.5", True),
        ("2.1.0", "~> 1.5", False),
        ("1.5.9", "~> 1.5.7", True),
        ("1.6.0", "~> 1.5.7", False),
        ("1.11.4", "> 1.11.4", False),
        ("1.11.4", "<= 1.11.4", True),
    ],
    ids=str,
)
def test_terraform_version_constraints(version: str, constraint: str, allowed: bool) -> None:
    assert version_allows(version, constraint) is allowed


def test_a_malformed_constraint_is_named() -> None:
    assert version_problem(">= 1.5.7") is None
    assert "not a version constraint" in str(version_problem(">= one"))


INFRA = Infrastructure.model_validate(
    {
        "stacks": {"platform": {"root": "terraform"}},
        "environments": [
            {"name": "dev"},
            {"name": "qa"},
            {"name": "prod", "protected": True},
            {"name": "sandbox", "protected": True, "allowDestroy": True},
        ],
        "ladder": ["dev", "qa", "prod"],
    }
)


def test_the_promotion_path_follows_the_ladder() -> None:
    assert infra_path(INFRA, "dev", "prod") == ["dev", "qa", "prod"]
    assert infra_path(INFRA, "qa", "qa") == ["qa"]
    with pytest.raises(InfraRefused, match="comes after"):
        infra_path(INFRA, "prod", "dev")
    with pytest.raises(InfraRefused, match="not an infrastructure environment"):
        infra_path(INFRA, "dev", "live")


@pytest.mark.parametrize(
    ("environment", "confirm", "refused"),
    [
        ("dev", None, "needs --destroy-confirm dev"),
        ("dev", "", "needs --destroy-confirm dev"),
        ("dev", "qa", "does not name the environment dev"),
        ("dev", "dev", None),
        ("prod", "prod", "is protected"),
        ("sandbox", "sandbox", None),
    ],
    ids=["missing", "empty", "wrong-name", "confirmed", "protected", "protected-but-allowed"],
)
def test_destroy_rules(environment: str, confirm: str | None, refused: str | None) -> None:
    found = destroy_refusal(INFRA, environment, confirm)
    if refused is None:
        assert found is None
    else:
        assert found is not None and refused in found


def test_output_references() -> None:
    assert output_reference("platform.aks", ["platform"]) == ("platform", "aks")
    assert output_reference("aks", ["platform"]) == ("platform", "aks")
    with pytest.raises(ValueError, match="name its stack"):
        output_reference("aks", ["platform", "data"])
