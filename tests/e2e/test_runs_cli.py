"""Runs through the CLI with a real worker process: deploy, follow, detach, approve, cancel."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from shipline.engine.reads import took
from tests.e2e.worker import running_worker, sh
from tests.engine_harness import memory_services

PROJECT = Path(__file__).parent / "projects" / "memory" / "shipline.yaml"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with running_worker(PROJECT, tmp_path, "bob", tmp_path / "worker.log") as environ:
        yield environ


def _wait_phase(
    env: dict[str, str], run: int, phases: set[str], timeout: float = 30
) -> dict[str, object]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        data = json.loads(sh(env, "runs", "show", str(run), "--json").stdout)
        if data["phase"] in phases:
            return data  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"run {run} never reached {phases}")


def test_deploy_follows_to_the_end(env: dict[str, str], tmp_path: Path) -> None:
    done = sh(env, "deploy", "--env", "dev", "--tag", "1.2.3", "--services", "api")
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout
    state = memory_services(tmp_path)
    assert {k: v["spec"]["version"] for k, v in state.items()} == {"dev/api": "1.2.3"}


def test_detach_approve_and_audit(env: dict[str, str]) -> None:
    started = sh(env, "deploy", "--env", "qa", "--tag", "2.0.0", "--detach", "--json")
    assert started.returncode == 3
    run = json.loads(started.stdout)["run"]
    _wait_phase(env, run, {"waiting"})
    refused = sh(env, "approve", str(run), "--as", "mallory")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "'mallory' is not in any approver group of this stage (leads)"
    assert sh(env, "approve", str(run), "--as", "ann", "--comment", "ok").returncode == 0
    data = _wait_phase(env, run, {"succeeded"})
    assert data["votes"] == [
        {
            "stage": "deploy",
            "user": "ann",
            "approve": True,
            "comment": "ok",
            "at": data["votes"][0]["at"],
        }
    ]  # type: ignore[index]
    audit = json.loads(sh(env, "audit", "list", "--json").stdout)
    assert [r["action"] for r in audit] == [  # newest first
        "run.finish", "approval.approve", "approval.refused", "run.start"
    ]  # fmt: skip
    assert audit[0]["details"]["phase"] == "succeeded"
    # the newest only, and the table says how many older ones it left out
    assert json.loads(sh(env, "audit", "list", "--limit", "2", "--json").stdout) == audit[:2]
    newest = sh(env, "audit", "list", "--limit", "2")
    assert "2 audit records (2 older: --limit 4)" in newest.stdout
    assert "run.finish" in newest.stdout and "run.start" not in newest.stdout
    only = json.loads(sh(env, "audit", "list", "--actor", "mallory", "--json").stdout)
    assert [r["action"] for r in only] == ["approval.refused"]
    assert json.loads(sh(env, "audit", "list", "--env", "dev", "--json").stdout) == []
    # an alias lists what its environment's name holds; a name nobody configured is refused
    aliased = json.loads(sh(env, "audit", "list", "--env", "test", "--json").stdout)
    assert aliased == audit  # every record of the run, its votes included
    assert [r["id"] for r in json.loads(sh(env, "runs", "list", "--env", "test", "--json").stdout)
            ] == [run]  # fmt: skip
    for command in (("runs", "list"), ("audit", "list")):
        typo = sh(env, *command, "--env", "qaa")
        assert typo.returncode == 2 and typo.stderr.startswith("unknown environment 'qaa'")
        assert "known: dev, qa, live" in typo.stderr
    # time filters: a span ago, a date (until includes its day), and what is not a time
    today = audit[0]["time"][:10]
    for window in (["--since", "1h"], ["--since", today, "--until", today]):
        assert len(json.loads(sh(env, "audit", "list", *window, "--json").stdout)) == 4
    assert json.loads(sh(env, "audit", "list", "--until", "1h", "--json").stdout) == []
    wrong = sh(env, "audit", "list", "--since", "yesterday")
    assert wrong.returncode == 2 and "'yesterday' is not a time" in wrong.stdout + wrong.stderr
    assert "Traceback" not in wrong.stdout + wrong.stderr
    assert sh(env, "audit", "verify").returncode == 0
    logs = json.loads(sh(env, "runs", "logs", str(run), "--json").stdout)
    assert any(e["kind"] == "stage.waiting" for e in logs["events"])
    # every stage and step says when it started and ended, and how long it took
    shown = json.loads(sh(env, "runs", "show", str(run), "--json").stdout)
    rows = [*shown["stages"], *(st for s in shown["stages"] for st in s["steps"])]
    ran = [r for r in rows if r["phase"] != "skipped"]
    assert len(ran) == 8 and all(r["finishedAt"] >= r["startedAt"] for r in ran)
    skipped = next(s for s in shown["stages"] if s["name"] == "rollback")
    assert skipped["phase"] == "skipped" and skipped["seconds"] is None  # it never started
    for row in ran:
        began, ended = (datetime.fromisoformat(row[k]) for k in ("startedAt", "finishedAt"))
        assert row["seconds"] == round((ended - began).total_seconds(), 3)
    deploy = next(s for s in shown["stages"] if s["name"] == "deploy")
    assert deploy["seconds"] >= 0.1  # it waited for ann's vote
    table = sh(env, "runs", "show", str(run)).stdout
    assert "took" in table and took(deploy["seconds"]) in table


def test_reject_fails_and_cancel_cancels(env: dict[str, str]) -> None:
    first = json.loads(
        sh(env, "deploy", "--env", "qa", "--tag", "3.0.0", "--detach", "--json").stdout
    )["run"]
    _wait_phase(env, first, {"waiting"})
    assert sh(env, "reject", str(first), "--as", "ann", "--comment", "no").returncode == 0
    assert _wait_phase(env, first, {"failed"})["phase"] == "failed"
    second = json.loads(
        sh(env, "deploy", "--env", "qa", "--tag", "3.0.1", "--detach", "--json").stdout
    )["run"]
    _wait_phase(env, second, {"waiting"})
    assert sh(env, "runs", "cancel", str(second), "--reason", "wrong tag").returncode == 0
    data = _wait_phase(env, second, {"cancelled"})
    assert data["cancelReason"] == "wrong tag"
    again = sh(env, "runs", "cancel", str(second))
    assert again.returncode == 2 and "already ended" in again.stderr


def test_latest_only_supersedes_through_the_cli(env: dict[str, str]) -> None:
    older = json.loads(
        sh(env, "deploy", "--env", "live", "--tag", "4.0.0", "--detach", "--json").stdout
    )["run"]
    _wait_phase(env, older, {"waiting"})
    newer = json.loads(
        sh(env, "deploy", "--env", "live", "--tag", "4.0.1", "--detach", "--json").stdout
    )["run"]
    data = _wait_phase(env, older, {"cancelled"})
    assert data["cancelReason"] == f"superseded by run {newer} (latest-only)"
    runs = json.loads(sh(env, "runs", "list", "--json").stdout)
    assert [r["id"] for r in runs][:2] == [newer, older]


def test_unknown_run_and_bad_input(env: dict[str, str]) -> None:
    missing = sh(env, "runs", "show", "999")
    assert missing.returncode == 2 and missing.stderr.startswith("no run 999")
    emergency = sh(env, "deploy", "--env", "dev", "--tag", "1", "--emergency")
    assert emergency.returncode == 2 and "--emergency needs --reason" in emergency.stderr
    unknown = sh(env, "deploy", "--env", "dev", "--tag", "1", "--services", "nope")
    assert unknown.returncode == 2 and "unknown service(s): nope" in unknown.stderr
