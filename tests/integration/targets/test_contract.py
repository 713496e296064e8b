"""One contract for every target the engine can use: the in-memory fake, the file-backed `memory`
target and the local target (real processes), each built through its `shipline.targets` entry
point as the engine builds it; a `kubernetes` target joins the list when it is installed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipline.domain.deploy import DeploySpec
from shipline.domain.health import HealthBounds, healthy, verify_health
from shipline.domain.ports import CanaryRouter, DeployTarget, Restorable, ServiceControl
from shipline.engine.wiring import build_target, target_kinds
from shipline.errors import CheckFailed, NotFoundError

KINDS = ["fake", "memory", "local", "kubernetes"]
KUBECONFIG = "SHIPLINE_TEST_KUBECONFIG"


def _kubernetes(tmp_path: Path) -> Any:
    """The kubernetes target on the test control plane (scripts/kubernetes.sh starts it)."""
    kubeconfig = os.environ.get(KUBECONFIG)
    if not kubeconfig:
        if os.environ.get("CI"):
            pytest.fail(f"{KUBECONFIG} is unset under CI: scripts/test starts the control plane")
        pytest.skip(f"no Kubernetes API server: {KUBECONFIG} is unset (scripts/test starts one)")
    built = build_target("kubernetes", tmp_path, {"kubeconfig": kubeconfig})
    built.rollout_timeout = 60
    built.stop("qa")  # what an earlier test left
    return built


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "kubernetes":
        built = _kubernetes(tmp_path)
    else:
        built = build_target(request.param, tmp_path, {})
    if request.param == "local":
        built.health_timeout = 8
    yield built
    if isinstance(built, Restorable):
        built.close()
    if request.param == "kubernetes":
        built.stop("qa")
        built.close()


def _bad(version: str) -> DeploySpec:
    env = {"SHIPLINE_DEMO_CRASH_AT_START": "1", "FAKE_UNHEALTHY": "1"}
    return DeploySpec("qa", "api", version, env=env)


def test_every_kind_is_installed_and_implements_the_ports(target: Any) -> None:
    assert set(KINDS) <= set(target_kinds())
    for port in (DeployTarget, ServiceControl, CanaryRouter):
        assert isinstance(target, port), port


def test_apply_observe_history(target: Any) -> None:
    with pytest.raises(NotFoundError):
        target.observe("qa", "api")
    assert target.plan(DeploySpec("qa", "api", "1.0.0")).create is True
    assert target.apply(DeploySpec("qa", "api", "1.0.0"), cause="deploy") == 1
    assert target.apply(DeploySpec("qa", "api", "1.1.0", replicas=2), cause="deploy") == 2
    state = target.observe("qa", "api")
    assert (state.version, state.desired, state.ready, state.revision) == ("1.1.0", 2, 2, 2)
    assert [r.version for r in target.history("qa", "api")] == ["1.0.0", "1.1.0"]
    plan = target.plan(DeploySpec("qa", "api", "1.2.0", replicas=2,
                                  env={"TOKEN": "s3cr3t-value", "LEVEL": "debug"},
                                  secret_names=frozenset({"TOKEN"})))  # fmt: skip
    assert plan.changes["version"] == {"from": "1.1.0", "to": "1.2.0"}
    assert "s3cr3t-value" not in repr(plan.as_dict())
    shown = {v["name"]: v["to"] for v in plan.as_dict()["variables"]}
    assert shown == {"LEVEL": "debug", "TOKEN": "***"}


def test_the_same_spec_again_is_in_sync(target: Any) -> None:
    spec = DeploySpec("qa", "api", "1.0.0", env={"K": "v", "S": "secret-1"},
                      secret_names=frozenset({"S"}))  # fmt: skip
    target.apply(spec)
    assert target.plan(spec).in_sync
    changed = DeploySpec("qa", "api", "1.0.0", env={"K": "v", "S": "secret-2"},
                         secret_names=frozenset({"S"}))  # fmt: skip
    plan = target.plan(changed)
    assert not plan.in_sync and plan.variables_changed == ("S",)
    assert "secret-2" not in repr(plan.as_dict()) and "secret-1" not in repr(plan.as_dict())


def test_rollback_previous_and_given(target: Any) -> None:
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        target.apply(DeploySpec("qa", "api", version))
    assert target.rollback("qa", "api", 0) == 4
    assert target.observe("qa", "api").version == "2.0.0"
    assert target.rollback("qa", "api", 1) == 5
    assert target.observe("qa", "api").version == "1.0.0"
    with pytest.raises(NotFoundError):
        target.rollback("qa", "api", 99)


def test_a_change_key_applies_once(target: Any) -> None:
    """A step that runs again after a crash passes the same key: nothing happens twice. (A
    scale is a revision of its own on some targets and not on Kubernetes: either way, once.)"""

    def twice(call: Any) -> int:
        first = call()
        revisions = len(target.history("qa", "api"))
        assert call() == first, "the same change key made a second change"
        assert len(target.history("qa", "api")) == revisions
        return int(first)

    one = twice(lambda: target.apply(DeploySpec("qa", "api", "1.0.0"), change="run-1/deploy/api"))
    two = twice(lambda: target.apply(DeploySpec("qa", "api", "2.0.0"), change="run-2/deploy/api"))
    three = twice(lambda: target.restart("qa", "api", change="run-3/restart/api"))
    four = twice(lambda: target.scale("qa", "api", 2, change="run-4/scale/api"))
    five = twice(lambda: target.rollback("qa", "api", 0, change="run-5/rollback/api"))
    assert one < two < three <= four < five
    assert target.observe("qa", "api").revision == five
    assert target.restart("qa", "api") > five  # no key: every call is a change


def test_history_names_the_change_that_made_each_revision(target: Any) -> None:
    """A step that runs again after a crash tells its own change from a service that was in
    sync before it by the key its newest revision was made under."""
    target.apply(DeploySpec("qa", "api", "1.0.0"), change="run-1/deploy/api")
    target.apply(DeploySpec("qa", "api", "2.0.0"), change="run-2/deploy/api")
    assert [r.change for r in target.history("qa", "api")][-2:] == [
        "run-1/deploy/api", "run-2/deploy/api"
    ]  # fmt: skip
    target.apply(DeploySpec("qa", "api", "3.0.0"))
    newest = target.history("qa", "api")[-1]
    assert (newest.version, newest.change) == ("3.0.0", None)


def test_a_failed_rollout_keeps_the_current_version(target: Any) -> None:
    target.apply(DeploySpec("qa", "api", "1.0.0"))
    with pytest.raises(CheckFailed):
        target.apply(_bad("2.0.0"))
    assert target.observe("qa", "api").version == "1.0.0"
    assert len(target.history("qa", "api")) == 1


def test_a_failed_first_rollout_leaves_nothing(target: Any) -> None:
    with pytest.raises(CheckFailed):
        target.apply(_bad("1.0.0"))
    with pytest.raises(NotFoundError):
        target.observe("qa", "api")


def test_scale_restart_stop_and_health(target: Any) -> None:
    target.apply(DeploySpec("qa", "api", "1.0.0"))
    target.apply(DeploySpec("qa", "web", "1.0.0"))
    scaled = target.scale("qa", "api", 2)
    assert scaled >= 1  # a revision of its own on some targets, not on Kubernetes
    assert target.observe("qa", "api").desired == 2
    assert target.restart("qa", "api") == scaled + 1
    observation = target.health("qa", "api", HealthBounds(min_replicas=1, max_replicas=3))
    assert healthy(verify_health(observation)), verify_health(observation)
    assert target.stop("qa", "web") == ["web"]
    assert target.stop("qa") == ["api"]
    with pytest.raises(NotFoundError):
        target.observe("qa", "api")


def test_canary_weight_then_abort_or_promote(target: Any) -> None:
    target.apply(DeploySpec("qa", "api", "1.0.0"))
    canary = DeploySpec("qa", "api", "1.1.0")
    assert target.set_canary(canary, 20) is True
    state = target.observe("qa", "api")
    assert (state.version, state.canary) == ("1.0.0", "1.1.0")
    assert state.weights["1.1.0"] * 4 == state.weights["1.0.0"]  # 20 % of the traffic
    target.metrics("qa", "api").collect()
    assert target.end_canary(canary, promote=False) == 1
    state = target.observe("qa", "api")
    assert (state.version, state.canary, list(state.weights)) == ("1.0.0", None, ["1.0.0"])
    target.set_canary(canary, 50)
    assert target.end_canary(canary, promote=True) == 2
    state = target.observe("qa", "api")
    assert (state.version, state.canary) == ("1.1.0", None)
    assert target.history("qa", "api")[-1].cause == "canary promoted"
