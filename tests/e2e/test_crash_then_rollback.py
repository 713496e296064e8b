"""A deploy whose worker is killed right after the target applied it, in a run that then fails:
the run's rollback must undo that deploy. The step runs again after the kill and finds the
service already at its version; that is its own change, not a service that was in sync before
the run, and the rollback treats it so. On the `memory` target (its state outlives the worker,
as a cluster's does)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from shipline.engine.failpoints import ENV, LOG_ENV
from tests.e2e.worker import EXE, sh
from tests.engine_harness import memory_services

PROJECT = """\
project: crash-rollback
stacks:
  go: {port: 8080, healthPath: /health}
services:
  - {name: api, stack: go}
tiers:
  nonprod: {}
targets:
  fake: {type: memory}
environments:
  - name: dev
    cluster: c
    namespace: d
    tier: nonprod
    target: fake
    strategy: STRATEGY
    tests:
      - {name: smoke, type: smoke, command: [python3, -c, "raise SystemExit(1)"]}
ladder: [dev]
"""


def _until_ended(env: dict[str, str], run: int, log: Path) -> tuple[str, int]:
    """Start a worker until run `run` ends: its phase and how many workers killed themselves."""
    for kills in range(5):
        with open(log, "ab") as out:
            worker = subprocess.Popen([EXE, "worker", "--poll-seconds", "0.1"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=out)  # fmt: skip
        end = time.monotonic() + 120
        while time.monotonic() < end and worker.poll() is None:
            phase = json.loads(sh(env, "runs", "show", str(run), "--json").stdout)["phase"]
            if phase in ("succeeded", "failed", "errored", "cancelled"):
                worker.terminate()
                worker.wait(timeout=60)
                return phase, kills
            time.sleep(0.2)
        if worker.poll() is None:
            worker.kill()
            worker.wait()
            raise AssertionError(f"run {run} did not end: {log.read_text()[-2000:]}")
        assert worker.returncode == -9, log.read_text()[-2000:]
    raise AssertionError(f"run {run} did not end after 5 worker starts")


def _project(tmp_path: Path, strategy: str) -> dict[str, str]:
    (tmp_path / "shipline.yaml").write_text(PROJECT.replace("STRATEGY", strategy))
    env = {**os.environ, "SHIPLINE_CONFIG": str(tmp_path / "shipline.yaml"),
           "SHIPLINE_HOME": str(tmp_path / "state"), "SHIPLINE_USER": "ann",
           LOG_ENV: str(tmp_path / "failpoints.log")}  # fmt: skip
    env.pop("SHIPLINE_DATABASE_URL", None)
    return env


def test_a_deploy_applied_before_a_kill_is_rolled_back_when_its_run_fails(tmp_path: Path) -> None:
    env = _project(tmp_path, "{type: rolling}")
    first = sh(env, "deploy", "--env", "dev", "--tag", "1.0.0", "--skip-tests", "--detach",
               "--json")  # fmt: skip
    assert _until_ended(env, int(json.loads(first.stdout)["run"]), tmp_path / "w.log") == (
        "succeeded",
        0,
    )
    # the worker dies right after the target applied 1.1.0, before the step recorded it
    second = sh(env, "deploy", "--env", "dev", "--tag", "1.1.0", "--detach", "--json")
    run = int(json.loads(second.stdout)["run"])
    phase, kills = _until_ended({**env, ENV: "deploy-applied"}, run, tmp_path / "w.log")
    assert (phase, kills) == ("failed", 1)  # its test gate fails
    shown = json.loads(sh(env, "runs", "show", str(run), "--json").stdout)
    phases = {s["name"]: s["phase"] for s in shown["stages"]}
    assert phases["tests"] == "failed" and phases["rollback"] == "succeeded", phases
    api = memory_services(tmp_path / "state")["dev/api"]
    assert [r["spec"]["version"] for r in api["revisions"]] == ["1.0.0", "1.1.0", "1.0.0"]
    assert json.loads(sh(env, "status", "--env", "dev", "--json").stdout)[0]["version"] == "1.0.0"
    logs = sh(env, "runs", "logs", str(run)).stdout
    assert "api 1.1.0: applied by this step before its worker stopped (revision 2)" in logs


def test_a_first_deploy_applied_before_a_kill_is_removed_when_its_run_fails(
    tmp_path: Path,
) -> None:
    """The same window in a canary strategy's first deploy (rolled out plainly: no stable yet)."""
    env = _project(tmp_path, "{type: canary, steps: [50, 100], bakeSeconds: 0}")
    started = sh(env, "deploy", "--env", "dev", "--tag", "1.0.0", "--detach", "--json")
    run = int(json.loads(started.stdout)["run"])
    phase, kills = _until_ended({**env, ENV: "deploy-applied"}, run, tmp_path / "w.log")
    assert (phase, kills) == ("failed", 1)  # its test gate fails
    logs = sh(env, "runs", "logs", str(run)).stdout
    assert "api 1.0.0: applied by this step before its worker stopped (revision 1)" in logs
    assert "api: first deploy failed; removed" in logs
    assert "dev/api" not in memory_services(tmp_path / "state")
