"""Exactly-once effects, with kills landed on purpose inside the windows where a step's effect and
its record part: a worker SIGKILLs itself (fail points) right after a step's outcome is recorded
and before the engine checkpoints it, and right after the target applied a deploy and before the
step recorded it. Deploy, deploy again, restart, scale and roll back through the CLI on the
`memory` target (its state outlives the worker, as a cluster's does); then no step with a
recorded outcome ran again (a step caught running beside the killed one starts over, says so,
and logs nothing more often than it started), no revision was made twice, and no audit record
or step event appears twice. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from shipline.engine.failpoints import ENV, LOG_ENV
from shipline.store.sql import SqlStateStore
from tests.e2e.worker import EXE, sh
from tests.engine_harness import BACKENDS, fresh_database, memory_services

PROJECT = Path(__file__).parent / "projects" / "memory" / "shipline.yaml"
# A rolling deploy's next service begins while the one before acts or writes its outcome down,
# and a service's verification while the next one deploys: a kill fired by one step lands
# inside another's window too, and that one may then never reach its own fail point. So the
# counts below are what every run reaches whatever the threads' timing (between 15 and 19
# kills were seen in all): each run's first step (its plan, which runs alone) is killed after
# its outcome is recorded, and each deploy of both services is killed after one of its two
# services was applied.
COMMANDS = [
    ["deploy", "--env", "dev", "--services", "api,web", "--tag", "1.0.0"],
    ["deploy", "--env", "dev", "--services", "api,web", "--tag", "1.1.0"],
    ["restart", "--env", "dev", "--services", "api"],
    ["scale", "--env", "dev", "--services", "web", "--replicas", "2"],
    ["rollback", "--env", "dev", "--services", "api", "--revision", "1"],
    ["deploy", "--env", "dev", "--services", "api,web", "--tag", "1.2.0"],
]
DEPLOYS = sum(1 for command in COMMANDS if command[0] == "deploy")
MIN_KILLS = len(COMMANDS) + DEPLOYS


def _run_to_the_end(env: dict[str, str], run: int, home: Path) -> int:
    """Start workers until run `run` ends; returns how many killed themselves on the way."""
    for kills in range(60):
        with open(home / "worker.log", "ab") as log:
            worker = subprocess.Popen(
                [EXE, "worker", "--id", "w1", "--poll-seconds", "0.1"],
                env=env, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        end = time.monotonic() + 120
        phase = "pending"
        while time.monotonic() < end and worker.poll() is None:
            phase = json.loads(sh(env, "runs", "show", str(run), "--json").stdout)["phase"]
            if phase in ("succeeded", "failed", "errored", "cancelled"):
                break
            time.sleep(0.2)
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=60)
            assert phase in ("succeeded", "failed", "errored", "cancelled"), f"run {run} stuck"
            return kills
        assert worker.returncode == -9, (home / "worker.log").read_text()[-2000:]
    raise AssertionError(f"run {run} did not end after 60 worker starts")


@pytest.mark.parametrize("backend", BACKENDS)
def test_kills_inside_the_commit_windows_repeat_nothing(backend: str, tmp_path: Path) -> None:
    state_url, _ = fresh_database(backend, tmp_path)
    fired = tmp_path / "failpoints.log"
    env = {
        **os.environ,
        "SHIPLINE_CONFIG": str(PROJECT),
        "SHIPLINE_HOME": str(tmp_path),
        "SHIPLINE_USER": "ann",
        "SHIPLINE_DATABASE_URL": state_url,
        ENV: "step-recorded,deploy-applied",
        LOG_ENV: str(fired),
    }
    kills, runs = 0, []
    for command in COMMANDS:
        started = sh(env, *command, "--detach", "--json")
        assert started.returncode == 3, started.stderr
        run = int(json.loads(started.stdout)["run"])
        runs.append(run)
        kills += _run_to_the_end(env, run, tmp_path)
        shown = json.loads(sh(env, "runs", "show", str(run), "--json").stdout)
        assert shown["phase"] == "succeeded", (command, shown)

    windows = collections.Counter(line.split()[0] for line in fired.read_text().splitlines())
    print(f"{backend}: {kills} kills inside the windows: {dict(windows)}")
    assert kills >= MIN_KILLS and kills == sum(windows.values()), (kills, windows)
    assert windows["deploy-applied"] >= DEPLOYS, windows
    assert windows["step-recorded"] >= len(COMMANDS), windows

    store = SqlStateStore.connect(state_url)
    try:
        for run in runs:
            events = store.events(run)
            for step in store.steps(run):
                key = (step["stage"], step["name"])
                lines = [
                    row["line"] for row in store.logs(run) if (row["stage"], row["step"]) == key
                ]
                # A step whose outcome was recorded never runs again. One that was running when
                # the worker died (beside the step that reached the fail point: verification
                # checks services side by side) starts over, and says so.
                starts = [e["message"] for e in events
                          if e["kind"] == "step.running" and (e["stage"], e["step"]) == key]  # fmt: skip
                assert all("again" in said for said in starts[1:]), (run, key, starts)
                repeated = [line for line, n in collections.Counter(lines).items()
                            if n > len(starts)]  # fmt: skip
                assert not repeated, f"run {run} {key} logged more often than it started"
            ends = collections.Counter(
                (e["stage"], e["step"], e["kind"])
                for e in store.events(run)
                if e["kind"] in ("step.succeeded", "stage.succeeded", "run.succeeded")
            )
            assert all(n == 1 for n in ends.values()), f"run {run}: {ends}"
        memory = memory_services(tmp_path)
        api = memory["dev/api"]["revisions"]
        web = memory["dev/web"]["revisions"]
        # api: 1.0.0, 1.1.0, restart, rollback to 1, 1.2.0; web: 1.0.0, 1.1.0, scale, 1.2.0
        assert [r["cause"].split()[0] for r in api] == [
            "deploy", "deploy", "restart", "rollback", "deploy"
        ]  # fmt: skip
        assert [r["cause"].split()[0] for r in web] == ["deploy", "deploy", "scale", "deploy"]
        for service, expected in (("api", 5), ("web", 4)):
            numbers = [r["revision"] for r in store.revisions("dev", service)]
            assert numbers == list(range(1, expected + 1)), (service, numbers)
        audit = [
            (r["actor"], r["action"], json.dumps(r["details"], sort_keys=True))
            for r in json.loads(sh(env, "audit", "list", "--limit", "100000", "--json").stdout)
        ]
        assert len(audit) == len(set(audit)), "an audit record was written twice"
        assert sh(env, "audit", "verify").returncode == 0
    finally:
        store.close()
