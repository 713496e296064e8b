"""Canaries side by side (`strategy.maxParallel`), through the CLI and real worker processes on
the `memory` target: each service's canary runs on its own, at the same time as the others;
kill -9 of the worker while they run loses neither; a person promotes or aborts one of them by
`--service`, or each one running without it; a cancellation restores every stable version."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.test_canary_runs import (
    _memory,
    _show,
    _start,
    _until_running,
    _wait,
    _worker,
    crash_seed,
    kill_while_running,
)
from tests.e2e.worker import running_worker, sh

PROJECT = Path(__file__).parent / "projects" / "canary-wide" / "shipline.yaml"


def _environ(home: Path) -> dict[str, str]:
    environ = {**os.environ, "SHIPLINE_CONFIG": str(PROJECT), "SHIPLINE_HOME": str(home),
               "SHIPLINE_USER": "ann"}  # fmt: skip
    environ.pop("SHIPLINE_DATABASE_URL", None)
    return environ


def _steps(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (deploy,) = [s for s in data["stages"] if s["name"] == "deploy"]
    return {step["name"]: step for step in deploy["steps"]}


def _progress(env: dict[str, str], run: int, service: str) -> list[int]:
    """The canary step numbers `service`'s canary recorded, in order."""
    logs = json.loads(sh(env, "runs", "logs", str(run), "--json").stdout)["logs"]
    return [int(m.group(1)) for line in logs
            if line["step"] == service and (m := re.match(r"step (\d+)/\d+:", line["line"]))]  # fmt: skip


def _until_paused(home: Path, env: str, version: str, services: tuple[str, ...]) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        found = _memory(home)["services"]
        canaries = [(found.get(f"{env}/{s}") or {}).get("canary") for s in services]
        if all(c and c["spec"]["version"] == version for c in canaries):
            return
        time.sleep(0.1)
    raise AssertionError(f"the canaries of {services} never started")


def _paused_in_qa(env: dict[str, str], home: Path) -> int:
    """qa at 1.0.0, then a run of 1.1.0 whose two canaries wait for a person, at 10 %."""
    assert _wait(env, _start(env, "--env", "qa", "--tag", "1.0.0"))["phase"] == "succeeded"
    run = _start(env, "--env", "qa", "--tag", "1.1.0")
    _until_paused(home, "qa", "1.1.0", ("api", "web"))
    return run


def test_the_canaries_of_a_stage_run_side_by_side_and_survive_kill_9(tmp_path: Path) -> None:
    home = tmp_path / "state"
    env = _environ(home)
    log = tmp_path / "worker.log"
    seed, rng = crash_seed()
    worker = _worker(env, log)
    try:
        _until_running(worker, log, 1)
        assert _wait(env, _start(env, "--env", "dev", "--tag", "1.0.0"))["phase"] == "succeeded"
        run = _start(env, "--env", "dev", "--tag", "2.0.0")
        worker, data = kill_while_running(env, log, (worker, 1), run, rng, (3, 0.3, 0.9))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert data["phase"] == "succeeded", f"seed {seed}: {data['reason']}"
    steps = _steps(data)
    for name in ("api", "web"):
        assert steps[name]["note"].startswith("canary 2.0.0 promoted after "), (seed, steps[name])
        service = _memory(home)["services"][f"dev/{name}"]
        assert (service["spec"]["version"], service["canary"]) == ("2.0.0", None), seed
        progress = _progress(env, run, name)
        assert progress == sorted(progress), f"seed {seed}: {name} went back: {progress}"
        assert all(progress.count(s) <= 2 for s in set(progress)), f"seed {seed}: {progress}"
    # side by side: each canary began before the other ended
    api, web = (
        {k: datetime.fromisoformat(steps[n][k]) for k in ("startedAt", "finishedAt")}
        for n in ("api", "web")
    )
    assert api["startedAt"] < web["finishedAt"] and web["startedAt"] < api["finishedAt"], seed


def test_a_person_decides_one_canary_of_several_or_each_one(tmp_path: Path) -> None:
    home = tmp_path / "state"
    with running_worker(PROJECT, home, "ann", tmp_path / "worker.log") as env:
        run = _paused_in_qa(env, home)
        lines = [e["line"] for e in json.loads(sh(env, "runs", "logs", str(run), "--json").stdout)
                 ["logs"] if e["step"] == "web"]  # fmt: skip
        # each paused canary says how to decide it, and only it
        assert (
            f"step 2/2: pause until promoted (shipline canary promote|abort {run} --service web)"
            in lines
        )
        unknown = sh(env, "canary", "promote", str(run), "--service", "db")
        assert unknown.returncode == 2 and "no canary of 'db' running now" in unknown.stderr
        assert "running now: api, web" in unknown.stderr
        promoted = sh(env, "canary", "promote", str(run), "--service", "api")
        assert promoted.returncode == 0, promoted.stderr
        assert "canary of api promoted" in promoted.stdout
        end = time.monotonic() + 60
        while _steps(_show(env, run))["api"]["phase"] != "succeeded":
            assert time.monotonic() < end, _show(env, run)
            time.sleep(0.1)
        time.sleep(0.5)  # web's canary waits on: the promote named api only
        assert _steps(_show(env, run))["web"]["phase"] == "running"
        assert _memory(home)["services"]["qa/web"]["canary"]["weight"] == 10
        aborted = sh(env, "canary", "abort", str(run))  # each one running: web's
        assert aborted.returncode == 0 and "canary of web aborted" in aborted.stdout
        data = _wait(env, run)
        records = json.loads(sh(env, "audit", "list", "--json").stdout)
    assert data["phase"] == "failed" and "web" in data["reason"], data["reason"]
    assert "aborted by a person" in _steps(data)["web"]["error"]
    web = _memory(home)["services"]["qa/web"]
    assert (web["spec"]["version"], web["canary"]) == ("1.0.0", None)
    decided = [(r["action"], r["details"]["step"]) for r in records
               if r["action"] in ("canary.promote", "canary.abort")]  # fmt: skip
    assert decided == [("canary.abort", "web"), ("canary.promote", "api")]  # newest first


def test_cancel_during_side_by_side_canaries_restores_each_stable(tmp_path: Path) -> None:
    home = tmp_path / "state"
    with running_worker(PROJECT, home, "ann", tmp_path / "worker.log") as env:
        run = _paused_in_qa(env, home)
        assert sh(env, "runs", "cancel", str(run), "--reason", "enough").returncode == 0
        data = _wait(env, run)
    assert data["phase"] == "cancelled", data["reason"]
    for name in ("api", "web"):
        service = _memory(home)["services"][f"qa/{name}"]
        assert (service["spec"]["version"], service["canary"]) == ("1.0.0", None), name
        assert _steps(data)[name]["phase"] == "cancelled", _steps(data)[name]
