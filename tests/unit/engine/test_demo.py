"""What the demo derives from QuikApp's configuration (every rung on this machine, the rest as
configured, what differs said), and the runs it plans at a given time."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from shipline.config.loader import load_config
from shipline.domain.models import Config
from shipline.engine.demo import demo_data, demo_plan, write_demo
from shipline.engine.workspace import Workspace

QUIKAPP = Path(__file__).resolve().parents[3] / "examples" / "quikapp"


def _demo(tmp_path: Path) -> tuple[Config, Config, list[str], Path]:
    project = tmp_path / "quikapp"
    shutil.copytree(QUIKAPP, project, ignore=shutil.ignore_patterns(".shipline"))
    ws = Workspace.open(project / "shipline.yaml", environ={"SHIPLINE_HOME": str(tmp_path / "s")})
    path, differs = write_demo(ws)
    return ws.config, load_config(path), differs, path


def test_every_rung_runs_here_and_the_rest_stays_as_configured(tmp_path: Path) -> None:
    original, derived, differs, path = _demo(tmp_path)
    assert path == tmp_path / "s" / "demo" / "shipline.yaml"
    assert {t.type for t in derived.targets.values()} == {"local"}
    assert {name: t.resources.min_replicas for name, t in derived.tiers.items()} == dict.fromkeys(
        ("nonprod", "preprod", "prod"), 1
    )
    assert {s.type for s in derived.secret_stores.values()} == {"file"}
    staging = derived.environment("staging").strategy
    assert staging.type == "canary"
    assert (staging.bake_seconds, staging.analysis.interval_seconds) == (6.0, 3.0)
    assert differs == [
        "  - targets aks-dev, aks-prod, aks-qa, aks-staging, aks-uat: type local"
        " (processes on this machine)",
        "  - tiers preprod, prod: one replica per service (minReplicas 1)",
        "  - secret stores kv-quikapp: the embedded encrypted store (random values)",
        "  - canaries of staging, live: bake at most 6 s a step, an analysis every 3 s at most",
    ]
    # the rest is QuikApp's own: services, ladder, approvals, business hours, gates, triggers
    for field in ("services", "stacks", "ladder", "approver_groups", "variable_groups",
                  "triggers", "notifications", "ci", "infrastructure", "access"):  # fmt: skip
        assert getattr(derived, field) == getattr(original, field), field
    for before, after in zip(original.environments, derived.environments, strict=True):
        assert (after.name, after.target, after.approvals, after.checks, after.tests) == (
            before.name, before.target, before.approvals, before.checks, before.tests)  # fmt: skip
        if before.strategy.type == "rolling":
            assert after.strategy == before.strategy
        else:
            assert after.strategy.steps == before.strategy.steps
            assert after.strategy.max_parallel == before.strategy.max_parallel
    # the project's other files, which its commands name by relative paths, are reachable
    assert (path.parent / "tests" / "smoke.py").is_file()
    assert not (path.parent / "services.yaml").exists()  # merged into the one file
    # with the demo's own configuration in use, the demo is that one (not one derived from it)
    again = Workspace.open(path, environ={})
    assert write_demo(again) == (path, differs)


def test_the_plan_is_an_emergency_only_while_lives_business_hours_are_closed(
    tmp_path: Path,
) -> None:
    _, derived, _, _ = _demo(tmp_path)
    saturday = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    monday = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # 10:00 in New York
    closed = demo_plan(derived, saturday)
    assert [(s.kind, s.environment, s.tag, s.emergency) for s in closed] == [
        ("deploy", "local", "1.0.0", []), ("promote", "local", "1.0.0", ["live"]),
        ("deploy", "local", "1.1.0", []), ("promote", "local", "1.1.0", ["live"]),
    ]  # fmt: skip
    assert len(closed[0].services) == 22 and closed[2].services == closed[3].services
    assert closed[2].services == ["auth-service", "backend-gateway", "workspace-service"]
    assert [s.emergency for s in demo_plan(derived, monday)] == [[], [], [], []]


def test_a_canary_pause_for_a_person_becomes_a_short_timed_one_and_says_so() -> None:
    source = QUIKAPP.parents[1] / "tests" / "e2e" / "projects" / "canary-wide" / "shipline.yaml"
    data, header = demo_data(load_config(source), source)
    derived = Config.model_validate(data)
    steps = derived.environment("qa").strategy.steps  # type: ignore[union-attr]
    assert [s.model_dump(exclude_none=True) for s in steps] == [
        {"set_weight": 10}, {"pause": {"duration": 3.0}}, {"set_weight": 100}]  # fmt: skip
    assert "  - canary pauses for a person in qa: 3 s (nobody promotes a canary in the demo)" in (
        header
    )
    assert "  - targets fake: type local (processes on this machine)" in header
