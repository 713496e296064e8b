"""When the step of a stage may also end the run: only when no later stage would run after
the stage's phase, with the later stages passed over as the workflow would record them."""

from __future__ import annotations

from typing import Any

import pytest

from shipline.domain.pipeline import Phase, PipelineSpec, dependencies, ends_after, stage_order

DEPLOY = [
    {"name": "validate", "steps": [{"name": "plan"}]},
    {"name": "deploy", "dependsOn": ["validate"], "steps": [{"name": "api"}]},
    {"name": "verify", "dependsOn": ["deploy"], "steps": [{"name": "api"}]},
    {"name": "rollback", "dependsOn": ["deploy", "verify"], "condition": "failed",
     "steps": [{"name": "api"}]},
]  # fmt: skip


def _ends(stages: list[dict[str, Any]], stage: str, prior: dict[str, Any] | None = None,
          **results: Phase) -> dict[str, dict[str, Any]]:  # fmt: skip
    spec = PipelineSpec.model_validate({"kind": "test", "stages": stages})
    order = stage_order(spec)
    by_name = {s.name: s for s in spec.stages}
    return ends_after(order, order.index(stage), by_name, dependencies(spec), results,
                       prior or {})  # fmt: skip


def test_the_last_stage_that_runs_ends_the_run_when_it_succeeds_or_is_cancelled() -> None:
    ends = _ends(DEPLOY, "verify", validate=Phase.SUCCEEDED, deploy=Phase.SUCCEEDED)
    assert ends == {
        "succeeded": {"phase": "succeeded",
                      "passed": [("rollback", 3, "skipped", "condition not met")]},
        "cancelled": {"phase": "cancelled",
                      "passed": [("rollback", 3, "cancelled", "run cancelled")]},
    }  # fmt: skip
    # failed or errored: the rollback stage runs after it, so the run does not end there


def test_a_stage_with_stages_to_run_after_it_never_ends_the_run() -> None:
    ends = _ends(DEPLOY, "deploy", validate=Phase.SUCCEEDED)
    assert set(ends) == {"cancelled"}  # succeeded: verify runs; failed: rollback runs


@pytest.mark.parametrize("phase", ["succeeded", "failed", "errored"])
def test_the_only_stage_ends_the_run_in_every_phase(phase: str) -> None:
    ends = _ends(DEPLOY[:1], "validate")
    assert ends[phase] == {"phase": phase, "passed": []}


def test_a_later_stage_recorded_in_an_earlier_segment_leaves_the_end_to_the_workflow() -> None:
    prior = {"rollback": {"phase": "skipped", "finished": True}}
    assert _ends(DEPLOY, "verify", prior, validate=Phase.SUCCEEDED, deploy=Phase.SUCCEEDED) == {}
