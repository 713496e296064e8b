"""One contract for every target the engine can use: the in-memory fake, the file-backed `memory`
target and the local target (real processes), each built through its `shipline.targets` entry
point as the engine builds it; a `kubernetes` target joins the list when it is installed."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipline.domain.deploy import DeploySpec
from shipline.domain.health import HealthBounds, healthy, verify_health
from shipline.domain.ports import (
    CanaryRouter,
    DeployTarget,
    OrderedApply,
    Restorable,
    ServiceControl,
)
from shipline.engine.wiring import build_target, target_kinds
from shipline.errors import CheckFailed, NotFoundError, Withdrawn

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
    yield from _built(request.param, tmp_path)


def _built(kind: str, tmp_path: Path) -> Iterator[Any]:
    """A target of `kind` as the engine builds it, closed after the test."""
    built = _kubernetes(tmp_path) if kind == "kubernetes" else build_target(kind, tmp_path, {})
    if kind == "local":
        built.health_timeout = 8
    yield built
    if isinstance(built, Restorable):
        built.close()
    if kind == "kubernetes":
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


# --- OrderedApply: a rollout queued behind another one (every kind but kubernetes) -----------

ORDERED = ["fake", "memory", "local"]
WAIT = 30.0  # seconds a queued rollout is given to end (a bug, not a timing)


@pytest.fixture(params=ORDERED)
def ordered(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    yield from _built(request.param, tmp_path)


def _queued(target: Any, after: str, spec: DeploySpec, change: str) -> tuple[threading.Thread, dict[str, Any]]:  # fmt: skip
    """`apply_after` in a thread of its own; what it returned or raised, once it ended."""
    got: dict[str, Any] = {}

    def run() -> None:
        try:
            got["revision"] = target.apply_after(
                after, spec, cause="deploy", log=lambda line: None, change=change
            )
        except Exception as exc:
            got["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, got


def test_a_rollout_queued_behind_another_starts_once_that_one_is_made(ordered: Any) -> None:
    assert isinstance(ordered, OrderedApply)
    thread, got = _queued(ordered, "run-1/deploy/api", DeploySpec("qa", "web", "1.0.0"),
                          "run-1/deploy/web")  # fmt: skip
    thread.join(0.3)  # queued before the change it follows began: it waits for it
    assert got == {}
    with pytest.raises(NotFoundError):
        ordered.observe("qa", "web")
    ordered.apply(DeploySpec("qa", "api", "1.0.0"), change="run-1/deploy/api")
    thread.join(WAIT)
    assert got == {"revision": 1}
    assert ordered.observe("qa", "web").version == "1.0.0"
    assert [r.change for r in ordered.history("qa", "web")] == ["run-1/deploy/web"]


def test_a_rollout_queued_behind_one_that_fails_is_withdrawn_and_changes_nothing(
    ordered: Any,
) -> None:
    ordered.apply(DeploySpec("qa", "web", "1.0.0"))
    thread, got = _queued(ordered, "run-2/deploy/api", DeploySpec("qa", "web", "2.0.0"),
                          "run-2/deploy/web")  # fmt: skip
    with pytest.raises(CheckFailed):
        ordered.apply(_bad("1.0.0"), change="run-2/deploy/api")
    thread.join(WAIT)
    assert isinstance(got.get("error"), Withdrawn), got
    assert "run-2/deploy/api" in str(got["error"])
    assert ordered.observe("qa", "web").version == "1.0.0"
    assert len(ordered.history("qa", "web")) == 1


def test_a_rollout_queued_behind_one_already_made_starts_at_once(ordered: Any) -> None:
    ordered.apply(DeploySpec("qa", "api", "1.0.0"), change="run-3/deploy/api")
    revision = ordered.apply_after(
        "run-3/deploy/api", DeploySpec("qa", "web", "1.0.0"), cause="deploy",
        log=lambda line: None, change="run-3/deploy/web",
    )  # fmt: skip
    assert revision == 1
    assert ordered.observe("qa", "web").version == "1.0.0"


def test_a_queued_rollout_made_before_returns_its_revision_without_waiting(ordered: Any) -> None:
    """A step that runs again after a crash: what it was queued behind is long gone."""
    made = ordered.apply(DeploySpec("qa", "web", "1.0.0"), change="run-4/deploy/web")
    again = ordered.apply_after(
        "run-4/deploy/never-sent", DeploySpec("qa", "web", "1.0.0"), cause="deploy",
        log=lambda line: None, change="run-4/deploy/web",
    )  # fmt: skip
    assert again == made
    assert len(ordered.history("qa", "web")) == 1
