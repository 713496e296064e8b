"""Several workers share one PostgreSQL database: every run completes once, work is shared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shipline.domain.pipeline import PipelineSpec
from shipline.engine.durable import EngineClient
from shipline.engine.runs import RunService
from shipline.store.audit import SqlAuditLog
from shipline.store.sql import SqlStateStore
from tests.engine_harness import TEST_AUDIT_KEY, fresh_database

EXE = str(Path(sys.executable).parent / "shipline")


def _project(tmp_path: Path, state_url: str, text: str) -> dict[str, str]:
    """The environment of a project whose configuration is `text`, on store `state_url`."""
    (tmp_path / "shipline.yaml").write_text(text)
    return {**os.environ, "SHIPLINE_CONFIG": str(tmp_path / "shipline.yaml"),
            "SHIPLINE_HOME": str(tmp_path), "SHIPLINE_DATABASE_URL": state_url}  # fmt: skip


def _start(
    tmp_path: Path, env_of: Callable[[str], dict[str, str]], names: Iterable[str], *args: str
) -> dict[str, subprocess.Popen[bytes]]:
    """A worker process per name (`--id NAME ARGS`), each logging to NAME.log."""
    workers = {}
    for name in names:
        with open(tmp_path / f"{name}.log", "wb") as log:
            workers[name] = subprocess.Popen(
                [EXE, "worker", "--id", name, "--poll-seconds", "0.1", *args],
                env=env_of(name), stdout=log, stderr=log,
            )  # fmt: skip
    return workers


def test_two_workers_share_the_runs(tmp_path: Path) -> None:
    state_url, system_url = fresh_database("postgresql", tmp_path)
    env = _project(tmp_path, state_url, "project: workers\n")
    workers = list(
        _start(tmp_path, lambda _: env, ("worker-0", "worker-1"), "--concurrency", "2").values()
    )
    store = SqlStateStore.connect(state_url)
    client = EngineClient(system_url)
    service = RunService(store, client, SqlAuditLog(store, TEST_AUDIT_KEY))
    effects = tmp_path / "effects"
    spec = PipelineSpec.model_validate(
        {
            "kind": "t",
            "stages": [
                {
                    "name": "s",
                    "steps": [
                        {
                            "name": f"x{i}",
                            "action": "record",
                            "params": {"file": str(effects), "seconds": 0.05},
                        }
                        for i in range(3)
                    ],
                }
            ],
        }
    )
    try:
        ids = [service.start(spec, actor="ann").id for _ in range(12)]
        end = time.monotonic() + 120
        while time.monotonic() < end and any(store.get_run(i).phase != "succeeded" for i in ids):  # type: ignore[union-attr]
            time.sleep(0.2)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
        client.close()
    assert all(store.get_run(i).phase == "succeeded" for i in ids)  # type: ignore[union-attr]
    lines = effects.read_text().splitlines()
    assert len(lines) == len(set(lines)) == 36
    attempts = (tmp_path / "effects.attempts").read_text().splitlines()
    assert len(attempts) == 36, "no step ran twice"
    import sqlalchemy as sa

    engine = sa.create_engine(system_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        executors = {
            row[0]
            for row in conn.execute(
                sa.text(
                    "SELECT DISTINCT executor_id FROM dbos.workflow_status WHERE name = 'shipline.run'"
                )
            )
        }
    engine.dispose()
    assert executors == {"worker-0", "worker-1"}, "both workers took runs"
    store.close()


def _executors(system_url: str) -> dict[str, tuple[str, str]]:
    import sqlalchemy as sa

    engine = sa.create_engine(system_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT workflow_uuid, executor_id, status FROM dbos.workflow_status"
                    " WHERE name = 'shipline.run'"
                )
            )
            return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}
    finally:
        engine.dispose()


def _logs(tmp_path: Path) -> str:
    """Every worker's log, for a failure's message."""
    return "\n".join(
        f"--- {f.name}\n{f.read_text()[-3000:]}" for f in sorted(tmp_path.glob("worker-*.log"))
    )


def _three_workers(
    tmp_path: Path, *args: str
) -> tuple[
    str, dict[str, subprocess.Popen[bytes]], SqlStateStore, EngineClient, RunService, PipelineSpec
]:
    """Workers 0, 1 and 2 (`ARGS`) on a fresh PostgreSQL store, what a test needs to start runs
    there, and the spec of a run of three 0.4 s steps recording their effects in `effects`."""
    state_url, system_url = fresh_database("postgresql", tmp_path)
    env = _project(tmp_path, state_url, "project: workers\n")
    workers = _start(tmp_path, lambda _: env, ("worker-0", "worker-1", "worker-2"), *args)
    store = SqlStateStore.connect(state_url)
    client = EngineClient(system_url)
    service = RunService(store, client, SqlAuditLog(store, TEST_AUDIT_KEY))
    effects = tmp_path / "effects"
    spec = PipelineSpec.model_validate({"kind": "t", "stages": [{"name": "s", "steps": [
        {"name": f"x{i}", "action": "record", "params": {"file": str(effects), "seconds": 0.4}}
        for i in range(3)]}]})  # fmt: skip
    return system_url, workers, store, client, service, spec


def _kill_one_and_finish(tmp_path: Path, *, adopt_after: str, adopted_by_hand: bool) -> None:
    """Three workers take 12 runs; worker-1 is killed (SIGKILL) with runs in flight; the others
    finish every run, no step's effect twice. With `adopted_by_hand` the workers never adopt
    (an hour's silence) and the test takes worker-1 over itself, as an adopter that died right
    after its adoption: the `recover` request it left in the outbox is what the others carry
    out."""
    system_url, workers, store, client, service, spec = _three_workers(
        tmp_path, "--concurrency", "2", "--adopt-after", adopt_after
    )
    try:
        ids = [service.start(spec, actor="ann").id for _ in range(12)]
        in_flight: set[str] = set()
        end = time.monotonic() + 60
        while time.monotonic() < end and not in_flight:
            in_flight = {wf for wf, (who, status) in _executors(system_url).items()
                         if who == "worker-1" and status == "PENDING"}  # fmt: skip
            time.sleep(0.05)
        assert in_flight, "worker-1 never took a run"
        members = store.silent_workers(datetime.now(UTC) + timedelta(days=1))
        assert "worker-1" in {w["name"] for w in members}, "a member before it took a run"
        workers["worker-1"].send_signal(signal.SIGKILL)
        workers["worker-1"].wait(timeout=10)
        if adopted_by_hand:
            seen = {w["name"]: w["seen_at"] for w in store.silent_workers(datetime.now(UTC))}
            assert store.adopt("worker-1", seen["worker-1"])
        end = time.monotonic() + 120
        while time.monotonic() < end and any(store.get_run(i).phase != "succeeded" for i in ids):  # type: ignore[union-attr]
            time.sleep(0.2)
    finally:
        for name, worker in workers.items():
            if name != "worker-1":
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=30)
        client.close()
    phases = [(i, store.get_run(i).phase) for i in ids]  # type: ignore[union-attr]
    assert all(phase == "succeeded" for _, phase in phases), (phases, _logs(tmp_path))
    finished = _executors(system_url)
    assert {finished[wf][0] for wf in in_flight} <= {"worker-0", "worker-2"}, "adopted"
    lines = (tmp_path / "effects").read_text().splitlines()
    assert len(lines) == len(set(lines)) == 36, "every step's effect exactly once"
    attempts = (tmp_path / "effects.attempts").read_text().splitlines()
    # a step completed before the kill never ran again; only one cut short there did (at most
    # one per run in flight on the killed worker)
    assert 36 <= len(attempts) <= 36 + len(in_flight)
    assert "worker-1" not in {w["name"] for w in store.silent_workers(datetime.now(UTC))}
    assert store.posted() == [], "the recover request was carried out and left the outbox"
    store.close()


def test_a_killed_worker_has_its_runs_finished_by_another(tmp_path: Path) -> None:
    _kill_one_and_finish(tmp_path, adopt_after="3", adopted_by_hand=False)


def test_an_adoption_whose_adopter_died_is_carried_out_by_any_worker(tmp_path: Path) -> None:
    _kill_one_and_finish(tmp_path, adopt_after="3600", adopted_by_hand=True)


def test_a_recover_request_for_a_worker_that_is_back_takes_nothing_from_it(
    tmp_path: Path,
) -> None:
    """A `recover` request left for a worker that has since started again (registered anew)
    must not hand the run it now executes to another worker: each step runs once. Three
    workers taking one run at a time, two runs: a free worker is there to take it."""
    system_url, workers, store, client, service, spec = _three_workers(
        tmp_path, "--concurrency", "1", "--adopt-after", "3600"
    )
    try:
        ids = [service.start(spec, actor="ann").id for _ in range(2)]
        holder = None
        end = time.monotonic() + 60
        while time.monotonic() < end and holder is None:
            holder = next((who for who, status in _executors(system_url).values()
                           if status == "PENDING"), None)  # fmt: skip
            time.sleep(0.05)
        assert holder is not None, "no worker took a run"
        store.post("recover", holder, None)  # as if left from an adoption before its restart
        end = time.monotonic() + 120
        while time.monotonic() < end and any(store.get_run(i).phase != "succeeded" for i in ids):  # type: ignore[union-attr]
            time.sleep(0.2)
    finally:
        for worker in workers.values():
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
        client.close()
    phases = [(i, store.get_run(i).phase) for i in ids]  # type: ignore[union-attr]
    assert all(phase == "succeeded" for _, phase in phases), (phases, _logs(tmp_path))
    attempts = (tmp_path / "effects.attempts").read_text().splitlines()
    assert sorted(attempts) == sorted(set(attempts)) and len(attempts) == 6, "no step ran twice"
    assert store.posted() == [], "the request was dropped"
    store.close()


LOCAL_AND_SHARED = """project: pinned
stacks:
  python: {port: 8000, healthPath: /health}
services:
  - {name: api, stack: python}
tiers:
  nonprod: {}
targets:
  here: {type: local}
  shared: {type: memory}
environments:
  - {name: dev, cluster: c, namespace: d, tier: nonprod, target: here}
  - {name: qa, cluster: c, namespace: q, tier: nonprod, target: shared}
ladder: [dev, qa]
"""


def test_local_runs_stay_on_their_machine_and_shared_ones_go_anywhere(tmp_path: Path) -> None:
    """Two workers on one PostgreSQL store, each with its own state folder (as on two
    machines): a deploy to the `local` target runs on the worker of the folder it was asked
    from; deploys to a shared target are taken by either."""
    state_url, system_url = fresh_database("postgresql", tmp_path)
    config = tmp_path / "shipline.yaml"
    config.write_text(LOCAL_AND_SHARED)
    homes = {name: tmp_path / name for name in ("alpha", "beta")}

    def env_of(name: str) -> dict[str, str]:
        return {**os.environ, "SHIPLINE_CONFIG": str(config), "SHIPLINE_HOME": str(homes[name]),
                "SHIPLINE_DATABASE_URL": state_url, "SHIPLINE_USER": "ann"}  # fmt: skip

    workers = _start(tmp_path, env_of, homes)
    asked: dict[int, str] = {}
    try:
        for n, name in enumerate(["alpha", "beta", "alpha", "beta"]):
            done = subprocess.run(
                [EXE, "deploy", "--env", "dev", "--tag", f"1.0.{n}", "--json"],
                env=env_of(name), capture_output=True, text=True, timeout=240, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout[-1500:] + done.stderr
            asked[json.loads(done.stdout)["id"]] = name
        shared = []
        for n in range(6):
            done = subprocess.run(
                [EXE, "deploy", "--env", "qa", "--tag", f"2.0.{n}", "--detach", "--json"],
                env=env_of("alpha"), capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 3, done.stderr
            shared.append(json.loads(done.stdout)["run"])
        store = SqlStateStore.connect(state_url)
        end = time.monotonic() + 120
        while time.monotonic() < end and any(
            store.get_run(i).phase != "succeeded"  # type: ignore[union-attr]
            for i in shared
        ):
            time.sleep(0.2)
        assert all(store.get_run(i).phase == "succeeded" for i in shared)  # type: ignore[union-attr]
        store.close()
    finally:
        for name, worker in workers.items():
            subprocess.run([EXE, "down", "--env", "dev"], env=env_of(name), check=False,
                           capture_output=True, timeout=60)  # fmt: skip
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
    ran = _executors(system_url)
    for run, name in asked.items():
        assert ran[f"shipline-run-{run}"][0] == name, (run, name, ran)


def test_a_paused_worker_taken_for_dead_stops_when_it_wakes(tmp_path: Path) -> None:
    """SIGSTOP a worker for longer than --adopt-after: another adopts it; when it goes on, its
    next heartbeat finds it was taken for dead and it exits (75) rather than run on."""
    state_url, _ = fresh_database("postgresql", tmp_path)
    env = _project(tmp_path, state_url, "project: paused\n")
    workers = _start(tmp_path, lambda _: env, ("keeper", "sleeper"), "--adopt-after", "2")
    store = SqlStateStore.connect(state_url)
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and len(store.silent_workers(datetime.now(UTC))) < 2:
            time.sleep(0.1)  # both registered
        workers["sleeper"].send_signal(signal.SIGSTOP)
        end = time.monotonic() + 60
        while time.monotonic() < end and "sleeper" in {
            w["name"] for w in store.silent_workers(datetime.now(UTC))
        }:
            time.sleep(0.2)  # until the keeper has adopted it (its row is gone)
        workers["sleeper"].send_signal(signal.SIGCONT)
        assert workers["sleeper"].wait(timeout=60) == 75
        assert "taken for dead" in (tmp_path / "sleeper.log").read_text()
        assert workers["keeper"].poll() is None  # the other one goes on
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.send_signal(signal.SIGCONT)
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=30)
        store.close()
