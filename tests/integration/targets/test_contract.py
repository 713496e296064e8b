"""One contract for every DeployTarget: the in-memory fake and the local target (real processes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipline.domain.ports import DeployTarget
from shipline.errors import CheckFailed, NotFoundError
from shipline.targets.fake import FakeTarget
from shipline.targets.local.target import LocalTarget, ServiceSpec


@pytest.fixture(params=["fake", "local"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "fake":
        yield FakeTarget()
        return
    local = LocalTarget(tmp_path, health_timeout=8)
    yield local
    local.close()


def _bad(version: str) -> ServiceSpec:
    env = {"SHIPLINE_DEMO_CRASH_AT_START": "1", "FAKE_UNHEALTHY": "1"}
    return ServiceSpec("qa", "api", version, env=env)


def test_is_a_deploy_target(target: Any) -> None:
    assert isinstance(target, DeployTarget)


def test_apply_status_history(target: Any) -> None:
    with pytest.raises(NotFoundError):
        target.status("qa", "api")
    assert target.plan(ServiceSpec("qa", "api", "1.0.0"))["create"] is True
    assert target.apply(ServiceSpec("qa", "api", "1.0.0")) == 1
    assert target.apply(ServiceSpec("qa", "api", "1.1.0", replicas=2)) == 2
    state = target.status("qa", "api")
    assert (state["version"], state["desired"], state["ready"], state["revision"]) == (
        "1.1.0",
        2,
        2,
        2,
    )
    assert [r["version"] for r in target.history("qa", "api")] == ["1.0.0", "1.1.0"]
    plan = target.plan(ServiceSpec("qa", "api", "1.2.0", replicas=2, env={"TOKEN": "s3cr3t-value"}))
    assert plan["changes"]["version"] == {"from": "1.1.0", "to": "1.2.0"}
    assert "s3cr3t-value" not in repr(plan)


def test_rollback_previous_and_given(target: Any) -> None:
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        target.apply(ServiceSpec("qa", "api", version))
    assert target.rollback("qa", "api") == 4
    assert target.status("qa", "api")["version"] == "2.0.0"
    assert target.rollback("qa", "api", 1) == 5
    assert target.status("qa", "api")["version"] == "1.0.0"
    with pytest.raises(NotFoundError):
        target.rollback("qa", "api", 99)


def test_a_failed_rollout_keeps_the_current_version(target: Any) -> None:
    target.apply(ServiceSpec("qa", "api", "1.0.0"))
    with pytest.raises(CheckFailed):
        target.apply(_bad("2.0.0"))
    assert target.status("qa", "api")["version"] == "1.0.0"
    assert len(target.history("qa", "api")) == 1
