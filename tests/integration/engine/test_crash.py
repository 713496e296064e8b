"""kill -9 of the worker at 20 random points: the run completes, no completed step runs again,
each step's effect happens once, and an approval given before a crash still counts.

Each `record` step appends its idempotency key to `effects` once (an idempotent effect, as a
deploy's desired state is) and every attempt to `effects.attempts`; a step that a kill caught
mid-way runs again after the restart, a completed one never does.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shipline.domain.pipeline import PipelineSpec
from shipline.engine.durable import EngineClient
from shipline.engine.runs import RunService
from shipline.store.audit import SqlAuditLog
from shipline.store.sql import SqlStateStore
from tests.engine_harness import BACKENDS, TEST_AUDIT_KEY, fresh_database

KILLS = 20
APPROVERS = {"cab": ["casey"]}


def _pipeline(effects: Path) -> PipelineSpec:
    def record(name: str, seconds: float = 0.08) -> dict[str, Any]:
        return {
            "name": name,
            "action": "record",
            "params": {"file": str(effects), "seconds": seconds},
        }

    return PipelineSpec.model_validate(
        {
            "kind": "crash",
            "stages": [
                {"name": "build", "steps": [record(f"b{i}") for i in range(6)]},
                {
                    "name": "approve",
                    "approval": {"groups": ["cab"]},
                    "steps": [record("a1"), record("a2")],
                },
                {
                    "name": "bake",
                    "steps": [
                        {"name": "timer", "kind": "timer", "params": {"seconds": 3}},
                        record("k1"),
                        record("k2"),
                    ],
                },
                {
                    "name": "release",
                    "locks": ["live/api"],
                    "steps": [record(f"r{i}") for i in range(24)],
                },
            ],
        }
    )


def _worker(folder: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "shipline"
    with open(folder / "worker.log", "ab") as log:
        return subprocess.Popen(
            [str(exe), "worker", "--id", "crash-1", "--poll-seconds", "0.1"],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _until_ready(
    worker: subprocess.Popen[bytes], log: Path, starts: int, timeout: float = 90
) -> None:
    """Wait until the worker started for the `starts`-th time says it runs."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if log.exists() and log.read_text().count("running") >= starts:
            return
        if worker.poll() is not None:
            raise AssertionError(f"worker exited with {worker.returncode}: {log.read_text()}")
        time.sleep(0.01)
    raise AssertionError(f"worker did not start: {log.read_text() if log.exists() else ''}")


def _situation(store: SqlStateStore, run_id: int) -> str:
    """Where the run is at this moment: inside a step, waiting, between steps, ended."""
    record = store.get_run(run_id)
    if record is not None and record.phase in ("succeeded", "failed", "errored", "cancelled"):
        return "after the run ended"
    if any(s["phase"] == "running" for s in store.steps(run_id)):
        return "inside a step"
    if any(s["phase"] == "waiting" for s in store.stages(run_id)):
        return "waiting for approval"
    if any(s["name"] == "bake" and s["phase"] == "running" for s in store.stages(run_id)):
        return "in the timer or between steps"
    return "between steps"


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_twenty_times(backend: str, tmp_path: Path) -> None:
    state_url, system_url = fresh_database(backend, tmp_path)
    (tmp_path / "shipline.yaml").write_text("project: crash\n")
    env = {
        **os.environ,
        "SHIPLINE_HOME": str(tmp_path / "state"),
        "SHIPLINE_CONFIG": str(tmp_path / "shipline.yaml"),
        "SHIPLINE_DATABASE_URL": state_url,
    }
    if backend == "sqlite":
        env["SHIPLINE_HOME"] = str(
            tmp_path
        )  # state.db and dbos.sqlite beside each other, as the URLs say
    store = SqlStateStore.connect(state_url)
    client = EngineClient(system_url)
    service = RunService(store, client, SqlAuditLog(store, TEST_AUDIT_KEY))
    effects = tmp_path / "effects"
    run = service.start(_pipeline(effects), actor="ann", approvers=APPROVERS)

    seed = int(os.environ.get("CRASH_SEED", random.randrange(1_000_000)))
    rng = random.Random(seed)
    approved = False
    landed: list[str] = []
    try:
        for kill in range(KILLS):
            worker = _worker(tmp_path, env)
            _until_ready(worker, tmp_path / "worker.log", kill + 1)
            time.sleep(rng.uniform(0.05, 0.5))
            landed.append(_situation(store, run.id))
            waiting = any(
                s["name"] == "approve" and s["phase"] == "waiting" for s in store.stages(run.id)
            )
            if waiting and not approved:
                service.vote(run.id, "casey", approve=True)  # approve, then crash right away
                approved = True
                time.sleep(rng.uniform(0.0, 0.05))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        approved_before_a_kill = approved
        worker = _worker(tmp_path, env)
        end = time.monotonic() + 120
        while time.monotonic() < end:
            stages = {s["name"]: s["phase"] for s in store.stages(run.id)}
            if stages.get("approve") == "waiting" and not approved:
                service.vote(run.id, "casey", approve=True)
                approved = True
            if store.get_run(run.id).phase in ("succeeded", "failed", "errored", "cancelled"):  # type: ignore[union-attr]
                break
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    finally:
        client.close()

    record = store.get_run(run.id)
    assert record is not None
    assert record.phase == "succeeded", f"seed {seed}: {record.reason}"
    keys = effects.read_text().splitlines()
    expected = [
        f"run-{run.id}/{stage}/{step}"
        for stage, steps in [
            ("build", [f"b{i}" for i in range(6)]),
            ("bake", ["k1", "k2"]),
            ("approve", ["a1", "a2"]),
            ("release", [f"r{i}" for i in range(24)]),
        ]
        for step in steps
    ]
    assert sorted(keys) == sorted(expected), f"seed {seed}: each effect exactly once"
    attempts = collections.Counter((tmp_path / "effects.attempts").read_text().splitlines())
    rerun = sum(count - 1 for count in attempts.values())
    assert kill + 1 == KILLS
    print(
        f"seed {seed}: {kill + 1} kills, {rerun} in-flight step(s) ran again; kills landed:",
        dict(collections.Counter(landed)),
    )
    assert len(set(landed)) >= 2, (
        f"seed {seed}: the kills should land in different situations: {landed}"
    )
    assert rerun <= KILLS, f"seed {seed}: only a step in flight at a kill may run again"
    assert approved_before_a_kill, (
        f"seed {seed}: the run should reach its approval during the kills"
    )
    assert len(store.votes(run.id)) == 1, "the approval given before a crash counted"
    assert all(s["phase"] == "succeeded" for s in store.steps(run.id))
    assert store.lock_holders() == []
    store.close()
