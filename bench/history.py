"""A promotion's reads of the run history, with HISTORY runs recorded (default 1,000): each a
deploy of the 22 QuikApp services to dev with the specification `shipline deploy` records for
it (about 40 kB of JSON), every tenth a promotion qa → staging. Measured in the same run, on the
SQLite state store, as medians of REPEAT tries:

  - the check before a promotion is queued (what held in the source environment, from the
    newest 1,000 runs): the runs listed as `shipline promote` lists them, their specifications
    left unread, against the same runs read whole, every specification decoded (how every list
    of runs read them before);
  - the runs `shipline status` reads (the newest 500) and `shipline runs list` (50), through
    the standard-library reader these commands use, against the same rows read whole;
  - what a command waiting for a run asks each time the run moves: the run's phase alone,
    against the whole run;
  - the report's versions before a promotion of the 22 services to qa and staging: one query,
    against one query per environment and service (as the report read them before).

Run: .venv/bin/python bench/history.py [HISTORY]
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shipline.config.loader import load_config
from shipline.engine.pipelines import deploy_pipeline, find_environment
from shipline.engine.promotion import held_in
from shipline.store.lite import SqliteRunReader
from shipline.store.records import RunRecord, aware
from shipline.store.schema import runs
from shipline.store.sql import SqlStateStore

QUIKAPP = Path(__file__).resolve().parents[1] / "examples" / "quikapp" / "shipline.yaml"
HISTORY = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
REPEAT = int(os.environ.get("REPEAT", "7"))


def timed(call: Callable[[], Any]) -> float:
    """Median seconds of REPEAT calls."""
    took = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        call()
        took.append(time.perf_counter() - start)
    return statistics.median(took)


def fill(store: SqlStateStore, folder: Path) -> tuple[list[str], int]:
    """HISTORY runs as `shipline deploy` and `shipline promote` record them; the services and
    the newest promotion's id."""
    config = load_config(QUIKAPP)
    services = [s.name for s in config.services]
    dev = find_environment(config, "dev")
    newest = 0
    for n in range(HISTORY):
        version = f"1.{n}.0"
        spec = deploy_pipeline(config, dev, services, version, str(folder), root=str(folder))
        promotion = n % 10 == 9
        run = store.create_run(
            pipeline="promote" if promotion else "deploy",
            environment="staging" if promotion else "dev",
            services=dict.fromkeys(services, version),
            params={"environments": ["qa", "staging"]} if promotion else {},
            spec=spec.model_dump(mode="json"),
            requested_by="bench",
        ).id
        store.record(run, "run.succeeded", "done", run_values={"phase": "succeeded"})
        if promotion:
            for position, name in enumerate(("qa:deploy", "qa:verify", "staging:deploy")):
                store.save_stage(run, name, position=position, phase="succeeded")
            newest = run
        for env in ["qa", "staging"] if promotion else ["dev"]:
            for service in services:
                store.add_revision(env, service, {"revision": n + 1, "version": version,
                                                  "replicas": 1, "cause": "deploy", "run": run})  # fmt: skip
    return services, newest


def whole_runs(store: SqlStateStore, limit: int) -> list[RunRecord]:
    """The newest runs read whole, their specifications decoded (how lists read them before)."""
    with store.reader.connect() as conn:
        rows = conn.execute(runs.select().order_by(runs.c.id.desc()).limit(limit))
        return [
            RunRecord(**{k: aware(v) if k.endswith("_at") else v for k, v in row._mapping.items()})
            for row in rows
        ]


def held_from_whole_runs(store: SqlStateStore, versions: dict[str, str]) -> set[str]:
    """The check as it read the history before: every run whole (deploys only: the
    promotions' stages are read the same way by both)."""
    held: set[str] = set()
    for run in whole_runs(store, 1000):
        if run.pipeline == "deploy" and run.environment == "dev" and run.phase == "succeeded":
            held |= {s for s, v in versions.items() if run.services.get(s) == v}
            if len(held) == len(versions):
                break
    return held


def listed(path: Path, limit: int) -> tuple[float, float]:
    """Seconds to list the newest `limit` runs as `status` and `runs list` do, and the same
    with every run's specification read and decoded as well (how the reader listed them
    before)."""
    reader = SqliteRunReader.open(path)
    assert reader is not None
    db = sqlite3.connect(path)

    def whole() -> None:
        reader.list_runs(limit=limit)
        query = "SELECT spec FROM runs ORDER BY id DESC LIMIT ?"
        [json.loads(spec) for (spec,) in db.execute(query, (limit,))]

    try:
        return timed(lambda: reader.list_runs(limit=limit)), timed(whole)
    finally:
        reader.close()
        db.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = SqlStateStore.connect(f"sqlite:///{folder / 'state.db'}")
        try:
            services, promotion = fill(store, folder)
            # the oldest version: every run of the history is looked at before it is found
            oldest = dict.fromkeys(services, "1.0.0")
            assert (
                held_in(store, "dev", oldest)
                == set(services)
                == held_from_whole_runs(store, oldest)
            )
            outlines = timed(lambda: held_in(store, "dev", oldest))
            whole = timed(lambda: held_from_whole_runs(store, oldest))
            lists = {limit: listed(folder / "state.db", limit) for limit in (500, 50)}
            phase = timed(lambda: store.phase_of(promotion))
            run = timed(lambda: store.get_run(promotion))
            envs = ["qa", "staging"]
            one_query = timed(lambda: store.versions_before(envs, services, promotion))
            per_service = timed(
                lambda: [store.revisions(e, s) for e in envs for s in services]
            )  # fmt: skip
        finally:
            store.close()
    print(json.dumps({
        "history": HISTORY,
        "services": len(services),
        "heldInSourceSeconds": round(outlines, 4),
        "heldInSourceFromWholeRunsSeconds": round(whole, 4),
        "heldInSourceRatio": round(whole / outlines, 1),
        "statusRunsMs": round(lists[500][0] * 1000, 1),
        "statusRunsWholeMs": round(lists[500][1] * 1000, 1),
        "statusRunsRatio": round(lists[500][1] / lists[500][0], 1),
        "runsListMs": round(lists[50][0] * 1000, 2),
        "runsListWholeMs": round(lists[50][1] * 1000, 2),
        "runsListRatio": round(lists[50][1] / lists[50][0], 1),
        "phaseAloneMs": round(phase * 1000, 3),
        "wholeRunMs": round(run * 1000, 3),
        "phaseRatio": round(run / phase, 1),
        "versionsBeforeMs": round(one_query * 1000, 2),
        "versionsBeforePerServiceMs": round(per_service * 1000, 2),
        "versionsBeforeRatio": round(per_service / one_query, 1),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
