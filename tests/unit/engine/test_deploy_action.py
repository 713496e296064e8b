"""The deploy step's questions to its target: a service is compared with what runs only when
something runs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from shipline.domain.deploy import DeployPlan, DeploySpec, Revision, ServiceState, plan_change
from shipline.engine import deploy_actions
from shipline.engine.actions import StepContext
from shipline.errors import NotFoundError


class Asked:
    """A target that says what it was asked, running `running` (None: nothing yet)."""

    def __init__(self, running: DeploySpec | None, made_by: str | None = None) -> None:
        self.running = running
        self.made_by = made_by  # the change key its running revision was made under
        self.calls: list[str] = []

    def observe(self, environment: str, service: str) -> ServiceState:
        self.calls.append("observe")
        if self.running is None:
            raise NotFoundError(f"{service} is not deployed to {environment}")
        return ServiceState(environment, service, self.running.version, desired=1, running=1,
                            ready=1, revision=1)  # fmt: skip

    def plan(self, spec: DeploySpec) -> DeployPlan:
        self.calls.append("plan")
        return plan_change(self.running, spec)

    def apply(self, spec: DeploySpec, *, cause: str, log: Any, change: str | None) -> int:
        self.calls.append("apply")
        return 2 if self.running else 1

    def history(self, environment: str, service: str) -> list[Revision]:
        self.calls.append("history")
        if self.running is None:
            return []
        return [Revision(1, self.running.version, 1, "", "deploy", change=self.made_by)]


def _deploy(monkeypatch: pytest.MonkeyPatch, target: Asked, **extra: Any) -> dict[str, Any]:
    monkeypatch.setattr(deploy_actions, "target_of", lambda params: target)
    monkeypatch.setattr(deploy_actions, "remember_revision", lambda *a, **k: None)
    monkeypatch.setattr(deploy_actions, "current", lambda: SimpleNamespace(workspace=None))
    ctx = StepContext(run_id=1, stage="deploy", step="api", attempt=1)
    params = {"environment": "qa", "service": "api", "version": "1.0.0", **extra}
    return deploy_actions.deploy(ctx, params)


def test_a_first_deploy_is_not_compared_with_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    target = Asked(None)
    assert _deploy(monkeypatch, target) == {"api": "1.0.0", "api.previousRevision": 0}
    assert target.calls == ["observe", "apply"]


def test_a_deploy_of_what_runs_is_compared_and_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = Asked(DeploySpec("qa", "api", "1.0.0"))
    done = _deploy(monkeypatch, target)
    assert done["api.inSync"] is True
    assert target.calls == ["observe", "plan", "history"]  # in sync: made by another change
    newer = Asked(DeploySpec("qa", "api", "0.9.0"))
    assert "api.inSync" not in _deploy(monkeypatch, newer)
    assert newer.calls == ["observe", "plan", "apply"]
    forced = Asked(DeploySpec("qa", "api", "1.0.0"))
    assert "api.inSync" not in _deploy(monkeypatch, forced, force=True)
    assert forced.calls == ["observe", "apply"]  # --force: no comparison asked for


def test_a_deploy_that_finds_its_own_change_says_what_it_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run again after its worker died between the target's apply and the step's record, the
    step finds the service in sync under its own change key: not "in sync" (a failed run's
    rollback would leave it), but the revision before its change (here none: a first deploy)."""
    target = Asked(DeploySpec("qa", "api", "1.0.0"), made_by="run-1/deploy/api")
    assert _deploy(monkeypatch, target) == {"api": "1.0.0", "api.previousRevision": 0}
    assert target.calls == ["observe", "plan", "history"]  # and no second apply
