"""What the deploy and CI pipelines are built from: every setting that the configuration accepts
reaches the run (`checks.health`, the rolling strategy, the canary, `ci.failOnSecrets`)."""

from __future__ import annotations

from typing import Any

import pytest

from shipline.domain.models import Config
from shipline.engine.pipelines import ci_pipeline, deploy_pipeline


def _config(**env: Any) -> Config:
    return Config.model_validate(
        {
            "project": "demo",
            "stacks": {"go": {"port": 8080, "healthPath": "/health"}},
            "services": [{"name": "api", "stack": "go"}],
            "tiers": {"nonprod": {}},
            "targets": {"here": {"type": "memory"}},
            "environments": [
                {"name": "dev", "cluster": "c", "namespace": "d", "tier": "nonprod",
                 "target": "here", **env}
            ],
            "ladder": ["dev"],
            "ci": {"failOnSecrets": True},
        }
    )  # fmt: skip


@pytest.mark.parametrize(
    ("health", "stages", "rollback_after"),
    [(True, ["validate", "deploy", "verify", "rollback"], ["deploy", "verify"]),
     (False, ["validate", "deploy", "rollback"], ["deploy"])],
    ids=["health-checked", "health-off"],
)  # fmt: skip
def test_checks_health_decides_the_verify_stage(
    health: bool, stages: list[str], rollback_after: list[str]
) -> None:
    config = _config(checks={"health": health})
    spec = deploy_pipeline(config, config.environments[0], ["api"], "1.0.0", "/tmp/x", root="/tmp")
    assert [s.name for s in spec.stages] == stages
    assert spec.stages[-1].depends_on == rollback_after


def test_the_rolling_strategy_and_the_canary_reach_the_deploy_step() -> None:
    rolling = _config(strategy={"type": "rolling", "maxSurge": 2, "maxUnavailable": 1})
    step = (
        deploy_pipeline(rolling, rolling.environments[0], ["api"], "1", "/x", root="/")
        .stages[1]
        .steps[0]
    )
    assert step.kind == "action"
    assert (step.params["strategy"]["maxSurge"], step.params["strategy"]["maxUnavailable"]) == (
        2,
        1,
    )
    canary = _config(strategy={"type": "canary", "steps": [{"setWeight": 5}, {"pause": {}}, 100]})
    step = (
        deploy_pipeline(canary, canary.environments[0], ["api"], "1", "/x", root="/")
        .stages[1]
        .steps[0]
    )
    assert step.kind == "canary"
    assert step.params["strategy"]["steps"] == [
        {"setWeight": 5},
        {"pause": {"duration": None}},
        100,
    ]


def test_fail_on_secrets_reaches_the_repository_scan() -> None:
    spec = ci_pipeline(
        _config(), repo="/r", services=["api"], tag="1", push=False, scan=True, commit=None,
        ref=None, artifacts="/a", manifest="/m",
    )  # fmt: skip
    scan = next(s for s in spec.stages if s.name == "scan-repository")
    assert scan.steps[0].params["failOnSecrets"] is True


def test_the_targets_settings_reach_every_step_with_paths_resolved_against_the_project() -> None:
    config = Config.model_validate(
        {
            **_config().model_dump(by_alias=True, exclude_defaults=True),
            "targets": {
                "here": {"type": "kubernetes", "context": "dev-admin",
                         "kubeconfig": "clusters/dev.yaml",
                         "manifests": "k8s/overlays/{environment}"}
            },
        }
    )  # fmt: skip
    spec = deploy_pipeline(config, config.environments[0], ["api"], "1", "/x", root="/srv/app")
    settings = [step.params["targetSettings"] for stage in spec.stages for step in stage.steps
                if "targetSettings" in step.params]  # fmt: skip
    assert len(settings) == 3  # deploy, verify, rollback
    assert all(
        s == {"cluster": None, "context": "dev-admin", "kubeconfig": "/srv/app/clusters/dev.yaml",
              "manifests": "k8s/overlays/{environment}", "project": "/srv/app"}
        for s in settings
    )  # fmt: skip


def test_max_parallel_rolls_several_services_at_once_and_canaries_one_at_a_time() -> None:
    rolling = _config(strategy={"type": "rolling", "maxParallel": 4})
    rolling = Config.model_validate(
        {**rolling.model_dump(by_alias=True, exclude_defaults=True, mode="json"),
         "environments": [{**rolling.environments[0].model_dump(by_alias=True, exclude_defaults=True), "strategy": {"type": "rolling", "maxParallel": 4}}],
         "services": [{"name": n, "stack": "go"} for n in ("a", "b", "c")]}
    )  # fmt: skip
    spec = deploy_pipeline(rolling, rolling.environments[0], ["a", "b", "c"], "1", "/x", root="/")
    assert {s.name: s.parallel for s in spec.stages} == {
        "validate": 1, "deploy": 3, "verify": 3, "rollback": 3
    }  # fmt: skip
    canary = _config(strategy={"type": "canary", "steps": [50, 100]})
    spec = deploy_pipeline(canary, canary.environments[0], ["api"], "1", "/x", root="/")
    assert {s.name: s.parallel for s in spec.stages}["deploy"] == 1


def test_a_releases_digests_reach_the_deploy_steps() -> None:
    config = _config()
    spec = deploy_pipeline(config, config.environments[0], ["api"], {"api": "1.4.0"}, "/x",
                           root="/", digests={"api": "sha256:" + "a" * 64})  # fmt: skip
    deploy = next(s for s in spec.stages if s.name == "deploy").steps[0]
    assert (deploy.params["version"], deploy.params["digest"]) == ("1.4.0", "sha256:" + "a" * 64)
