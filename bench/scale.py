"""Engine at scale. Part one: N deploys waiting for an approval on the `memory` target
(SQLite, one worker), then approved. Measured in the same run:
  - the idle worker with nothing waiting (CPU % of a core over the window, RSS, threads);
  - the same worker with N runs waiting: CPU %, RSS and threads (a waiting run holds a thread
    and DBOS's SQLite listener polls each one: what the engine-at-scale work removes);
  - one approval's latency: the vote as recorded to its run's stage running again (store
    timestamps), and the `approve` command's own time;
  - every run approved: completed runs per second;
  - the CLI's submission time per run (`deploy --detach`, the first 20; the rest are
    submitted in this process).
Part two, when PostgreSQL is given (SHIPLINE_TEST_DATABASE_URL, as `scripts/postgres.sh`
exports it): M deploys of 20 services (round robin, so that the per-service lock does not
serialise them) waiting for approval, all approved at once, completed runs per second with 1,
2 and 4 workers (separate processes, as on several machines, one PostgreSQL store); the
votes come from VOTERS (default 1) approvers at once, each voting one run after another.
Goals of the engine-at-scale issue: CPU < 2 % of a core with 10,000 waiting, RSS < 250 MB,
approval → acting < 200 ms, ≥ 20 runs/s with one worker (more with more), submission < 150 ms.

Run: .venv/bin/python bench/scale.py [N] [SECONDS] [M] [waiting]
     (`waiting`: only the idle and waiting figures, e.g. `bench/scale.py 10000 10 0 waiting`)
     (with PostgreSQL: bash -c 'source scripts/postgres.sh; .venv/bin/python bench/scale.py')
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shipline.store.sql import SqlStateStore

EXE = str(Path(sys.executable).parent / "shipline")
PROJECT = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "projects" / "memory"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
WINDOW = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
TICKS = os.sysconf("SC_CLK_TCK")
CLI_SUBMISSIONS = 20
M = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
WAITING_ONLY = len(sys.argv) > 4 and sys.argv[4] == "waiting"
SERVICES = 20
# how many approvers vote at once, each one run after another: one voter caps the figure at
# what one process votes per second (above 26 here: two workers completed that many a second);
# several take CPU from the workers on a machine of two cores. One, as the figures so far were
# measured.
VOTERS = int(os.environ.get("VOTERS", "1"))
WIDE = """project: wide
stacks:
  go: {port: 8080, healthPath: /health}
services:
%s
tiers:
  nonprod: {}
targets:
  fake: {type: memory}
approverGroups:
  leads: {members: [ann]}
environments:
  - {name: qa, cluster: c, namespace: q, tier: nonprod, target: fake, approvals: {groups: [leads]}}
ladder: [qa]
"""


def _usage(pid: int) -> tuple[float, int, int]:
    """(CPU seconds, RSS bytes, threads) of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    threads = next(int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("Threads"))  # fmt: skip
    return cpu, rss * 1024, threads


def _window(pid: int) -> dict[str, float]:
    before, _, _ = _usage(pid)
    time.sleep(WINDOW)
    after, rss, threads = _usage(pid)
    return {"cpuPercentOfACore": round(100 * (after - before) / WINDOW, 1),
            "rssMB": round(rss / 2**20), "threads": threads}  # fmt: skip


def _all_waiting(store: SqlStateStore, count: int, seconds: float) -> None:
    end = time.monotonic() + seconds
    while sum(r.phase == "waiting" for r in store.list_runs(limit=count)) < count:
        assert time.monotonic() < end, "the runs never all waited"
        time.sleep(0.5)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(PROJECT / "shipline.yaml", folder / "shipline.yaml")
        env = {**os.environ, "SHIPLINE_CONFIG": str(folder / "shipline.yaml"),
               "SHIPLINE_HOME": str(folder / "state"), "SHIPLINE_USER": "bench"}  # fmt: skip
        env.pop("SHIPLINE_DATABASE_URL", None)
        with open(folder / "worker.log", "wb") as log:
            worker = subprocess.Popen([EXE, "worker"], env=env, stdout=log, stderr=log)
        try:
            time.sleep(5)
            idle = _window(worker.pid)
            submit = []
            for n in range(min(N, CLI_SUBMISSIONS)):  # the CLI's cost per submission
                start = time.perf_counter()
                subprocess.run([EXE, "deploy", "--env", "qa", "--services", "api", "--tag",
                                f"1.0.{n}", "--detach"], env=env, capture_output=True,
                               check=False)  # fmt: skip
                submit.append(time.perf_counter() - start)
            from shipline.engine.submit import submit_deploy
            from shipline.engine.workspace import Workspace

            ws = Workspace.open(folder / "shipline.yaml", env)
            for n in range(len(submit), N):  # the rest in this process: the engine's figure
                submit_deploy(ws, env="qa", services="api", tag=f"1.0.{n}", actor="bench")
            store = SqlStateStore.connect(f"sqlite:///{folder / 'state' / 'state.db'}")
            _all_waiting(store, N, 3600)
            waiting = _window(worker.pid)
            if WAITING_ONLY:
                print(json.dumps({"waitingRuns": N, "idleWorker": idle,
                                  "withRunsWaiting": waiting}, indent=2))  # fmt: skip
                return
            first = store.list_runs(limit=N)[-1].id
            start = time.perf_counter()
            subprocess.run([EXE, "approve", str(first), "--as", "ann"], env=env,
                           capture_output=True, check=True)  # fmt: skip
            voted = time.perf_counter()
            while store.get_run(first).phase == "waiting":  # type: ignore[union-attr]
                time.sleep(0.005)
            # from the vote as recorded to the run's stage running again, both as the store
            # has them (the command's own start-up is the next figure, not this one)
            vote_at = store.votes(first)[0]["at"]
            resumed = next(e["at"] for e in store.events(first)
                           if e["kind"] == "stage.running" and e["at"] >= vote_at)  # fmt: skip
            acted = (resumed - vote_at).total_seconds()
            # The other approvals in this process (the run service the CLI uses), so that the
            # figure is the engine's, not N command start-ups.
            from shipline.engine.assembly import run_service
            from shipline.engine.workspace import Workspace

            service = run_service(ws)
            began = time.perf_counter()
            for record in store.list_runs(limit=N):
                if record.id != first:
                    service.vote(record.id, "ann", approve=True)
            while any(r.phase not in ("succeeded", "failed", "cancelled", "errored")
                      for r in store.list_runs(limit=N)):  # fmt: skip
                time.sleep(0.05)
            finished = time.perf_counter() - began
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=120)
    submit.sort()
    figures = {
        "waitingRuns": N,
        "idleWorker": idle,
        "withRunsWaiting": waiting,
        "approvalToActingMs": round(acted * 1000),
        "approveCommandMs": round((voted - start) * 1000),
        "approvedRunsOfOneServiceCompletedPerSecond": round((N - 1) / finished, 2),
        "submitMedianMs": round(submit[len(submit) // 2] * 1000),
        "submitRangeMs": [round(submit[0] * 1000), round(submit[-1] * 1000)],
    }
    if os.environ.get("SHIPLINE_TEST_DATABASE_URL") and M > 0:
        figures["postgresRunsPerSecond"] = {f"{w} workers": throughput(w) for w in (1, 2, 4)}
    print(json.dumps(figures, indent=2))


def _approve(service: Any, run_ids: list[int]) -> None:
    """One approver's votes, one after another."""
    for run_id in run_ids:
        service.vote(run_id, "ann", approve=True)


def throughput(workers: int) -> float:
    """M approved deploys of 20 services completed per second by `workers` worker processes
    sharing one PostgreSQL store (a fresh database each time)."""
    from tests.engine_harness import fresh_database

    from shipline.engine.assembly import run_service
    from shipline.engine.submit import submit_deploy
    from shipline.engine.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = [f"s{i:02d}" for i in range(SERVICES)]
        (folder / "shipline.yaml").write_text(
            WIDE % "\n".join(f"  - {{name: {n}, stack: go}}" for n in names)
        )
        state_url, _ = fresh_database("postgresql", folder)
        env = {**os.environ, "SHIPLINE_CONFIG": str(folder / "shipline.yaml"),
               "SHIPLINE_HOME": str(folder / "state"), "SHIPLINE_USER": "bench",
               "SHIPLINE_DATABASE_URL": state_url}  # fmt: skip
        ws = Workspace.open(folder / "shipline.yaml", env)
        for n in range(M):
            submit_deploy(ws, env="qa", services=names[n % SERVICES], tag=f"1.0.{n}",
                          actor="bench")  # fmt: skip
        procs = []
        for w in range(workers):
            with open(folder / f"worker-{w}.log", "wb") as log:
                procs.append(subprocess.Popen([EXE, "worker", "--id", f"w{w}"], env=env,
                                              stdout=log, stderr=log))  # fmt: skip
        store = SqlStateStore.connect(ws.database_url)
        try:
            end = time.monotonic() + 900
            _all_waiting(store, M, 900)
            voters = [run_service(ws) for _ in range(VOTERS)]
            ids = [record.id for record in store.list_runs(limit=M)]
            began = time.perf_counter()
            threads = [
                threading.Thread(target=_approve, args=(voter, ids[k::VOTERS]))
                for k, voter in enumerate(voters)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            while any(r.finished_at is None for r in store.list_runs(limit=M)):
                assert time.monotonic() < end + 900, "the runs never all finished"
                time.sleep(0.1)
            elapsed = time.perf_counter() - began
            failed = [r.id for r in store.list_runs(limit=M) if r.phase != "succeeded"]
            assert not failed, f"runs that did not succeed: {failed[:10]}"
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=120)
            store.close()
    return round(M / elapsed, 2)


if __name__ == "__main__":
    main()
