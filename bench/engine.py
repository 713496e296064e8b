"""Engine overhead: per no-op step, for one long run and for many concurrent runs, and the
memory that runs waiting for approval hold. Compared in the same run with bare DBOS workflows
doing the same number of no-op steps (the durable-execution floor shipline builds on).

Goals (SQLite): under 10 ms per step; 1,000 runs waiting for approval in under 200 MB.

Run:  .venv/bin/python bench/engine.py                      # SQLite
      bash -c 'source scripts/postgres.sh; .venv/bin/python bench/engine.py --pg "$SHIPLINE_TEST_DATABASE_URL"'
Options: --steps 1000 --runs 100 --run-steps 10 --waiting 1000
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dbos import DBOS

from shipline.domain.pipeline import PipelineSpec
from shipline.engine import durable
from shipline.engine.durable import EngineClient
from shipline.engine.runs import RunService
from shipline.engine.runtime import Runtime, system_database_url
from shipline.store.audit import SqlAuditLog
from shipline.store.sql import SqlStateStore


@DBOS.step(name="bench.noop")
def _bare_step(i: int) -> int:
    return i


@DBOS.workflow(name="bench.bare")
def _bare_workflow(n: int) -> int:
    total = 0
    for i in range(n):
        total += _bare_step(i)
    return total


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _spec(steps: int, approval: bool = False) -> PipelineSpec:
    stage: dict[str, Any] = {"name": "work", "steps": [{"name": f"s{i}"} for i in range(steps)]}
    if approval:
        stage["approval"] = {"groups": ["cab"]}
    return PipelineSpec.model_validate({"kind": "bench", "stages": [stage]})


def _wait(store: SqlStateStore, ids: list[int], phases: set[str], timeout: float = 3600) -> None:
    end = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < end:
        pending = {i for i in pending if (r := store.get_run(i)) is None or r.phase not in phases}
        time.sleep(0.05)
    if pending:
        raise SystemExit(f"runs never reached {phases}: {sorted(pending)[:5]}")


def _database(pg: str | None, folder: Path) -> tuple[str, str]:
    if not pg:
        url = f"sqlite:///{folder / 'state.db'}"
        return url, system_database_url(url, folder)
    import sqlalchemy as sa

    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = pg.rsplit("/", 1)[0] + f"/{name}"
    return url, system_database_url(url, folder)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", help="PostgreSQL URL (default: SQLite in a temporary folder)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--run-steps", type=int, default=10)
    parser.add_argument("--waiting", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        state_url, system_url = _database(args.pg, folder)
        store = SqlStateStore.connect(state_url)
        runtime = Runtime(store=store, audit=SqlAuditLog(store, b"bench-key" * 8))
        durable.launch(runtime, system_url, executor_id="bench", poll_seconds=0.05)
        client = EngineClient(system_url)
        service = RunService(store, client, runtime.audit)
        report: dict[str, Any] = {"backend": "postgresql" if args.pg else "sqlite"}

        start = time.perf_counter()
        DBOS.start_workflow(_bare_workflow, args.steps).get_result()
        bare_long = (time.perf_counter() - start) / args.steps

        start = time.perf_counter()
        run = service.start(_spec(args.steps), actor="bench")
        _wait(store, [run.id], {"succeeded"})
        long_run = (time.perf_counter() - start) / args.steps

        start = time.perf_counter()
        handles = [DBOS.start_workflow(_bare_workflow, args.run_steps) for _ in range(args.runs)]
        for handle in handles:
            handle.get_result()
        total_steps = args.runs * args.run_steps
        bare_many = (time.perf_counter() - start) / total_steps

        start = time.perf_counter()
        ids = [service.start(_spec(args.run_steps), actor="bench").id for _ in range(args.runs)]
        _wait(store, ids, {"succeeded"})
        many = (time.perf_counter() - start) / total_steps

        before = _rss_mb()
        start = time.perf_counter()
        waiting = [
            service.start(_spec(1, approval=True), actor="bench", approvers={"cab": ["x"]}).id
            for _ in range(args.waiting)
        ]
        _wait(store, waiting, {"waiting"})
        settle = time.perf_counter() - start
        after = _rss_mb()

        report.update(
            {
                "oneRun": {
                    "steps": args.steps,
                    "msPerStep": round(long_run * 1000, 2),
                    "bareDbosMsPerStep": round(bare_long * 1000, 2),
                    "ratio": round(long_run / bare_long, 2),
                },
                "concurrentRuns": {
                    "runs": args.runs,
                    "stepsEach": args.run_steps,
                    "msPerStep": round(many * 1000, 2),
                    "bareDbosMsPerStep": round(bare_many * 1000, 2),
                    "ratio": round(many / bare_many, 2),
                },
                "waitingForApproval": {
                    "runs": args.waiting,
                    "rssBeforeMb": round(before, 1),
                    "rssAfterMb": round(after, 1),
                    "rssGrowthMb": round(after - before, 1),
                    "secondsToAllWaiting": round(settle, 1),
                },
                "goals": {
                    "sqliteUnder10msPerStep": long_run < 0.010 if not args.pg else None,
                    "waitingUnder200Mb": after < 200,
                },
            }
        )
        print(json.dumps(report, indent=2))
        client.close()
        durable.shutdown()
        store.close()
    sys.stdout.flush()
    import os

    os._exit(0)  # threads of the waiting runs would keep the process alive


if __name__ == "__main__":
    main()
