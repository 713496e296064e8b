"""Which stages stream after another one (`follows`): only those that do nothing but follow."""

from __future__ import annotations

from typing import Any

import pytest

from shipline.domain.pipeline import PipelineSpec, followers

DEPLOY = {"name": "deploy", "steps": [{"name": "api"}]}


def _verify(**extra: Any) -> dict[str, Any]:
    return {"name": "verify", "follows": "deploy", "steps": [{"name": "api"}], **extra}


def _spec(*stages: dict[str, Any]) -> PipelineSpec:
    return PipelineSpec.model_validate({"kind": "deploy", "stages": list(stages)})


def test_a_stage_that_only_follows_streams_after_its_leader() -> None:
    found = followers(_spec(DEPLOY, _verify()))
    assert {leader: stage.name for leader, stage in found.items()} == {"deploy": "verify"}


@pytest.mark.parametrize(
    ("why", "stage"),
    [
        ("another dependency", _verify(dependsOn=["deploy", "build"])),
        ("it runs on failure", _verify(condition="failed")),
        ("its own approval", _verify(approval={"groups": ["qa"]})),
        ("its own locks", _verify(locks=["dev/api"])),
        ("a timer step", _verify(steps=[{"name": "api", "kind": "timer"}])),
        ("a step with retries", _verify(steps=[{"name": "api", "retry": {"attempts": 3}}])),
        ("no steps", _verify(steps=[])),
        ("no follows", {"name": "verify", "steps": [{"name": "api"}]}),
    ],
)
def test_a_stage_with_more_than_following_runs_after_its_leader(
    why: str, stage: dict[str, Any]
) -> None:
    build = {"name": "build", "dependsOn": [], "steps": [{"name": "x"}]}
    assert followers(_spec(build, DEPLOY, stage)) == {}, why
