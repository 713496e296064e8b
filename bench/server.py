"""The server under load, on the QuikApp reference configuration with N runs in its store
(SQLite), a real `shipline server` process, measured in the same run:
  - API latency p50 / p99 of `GET /api/v1/status` and `GET /api/v1/runs` (sequential,
    authenticated with a personal token), against the server's floor: a static file through
    the same stack (`GET /static/app.css`), and the same two reads in-process (no HTTP);
  - 50 dashboard clients holding the live-update stream (`/api/v1/events`) while runs change,
    each fetching the dashboard's content again on every change (as the page's script does):
    the server's CPU (% of a core) and RSS, and how long a change takes to be on every screen.

Run: .venv/bin/python bench/server.py [RUNS] [CLIENTS]
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shipline.domain.pipeline import PipelineSpec
from shipline.engine.assembly import accounts, run_service
from shipline.engine.status import service_status
from shipline.engine.workspace import Workspace

EXE = str(Path(sys.executable).parent / "shipline")
QUIKAPP = Path(__file__).resolve().parents[1] / "examples" / "quikapp"
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
CLIENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 50
REQUESTS = 200
TICKS = os.sysconf("SC_CLK_TCK")


def _usage(pid: int) -> tuple[float, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return (int(fields[11]) + int(fields[12])) / TICKS, rss * 1024


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50Ms": round(1000 * statistics.median(ordered), 2),
            "p99Ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 2)}  # fmt: skip


def _time(call: object, count: int = REQUESTS) -> dict[str, float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return _percentiles(samples)


def _fill(ws: Workspace, count: int) -> None:
    """`count` finished deploy runs, as a year of a team's delivery leaves them."""
    service = run_service(ws)
    spec = PipelineSpec.model_validate({"kind": "deploy", "stages": [{"name": "deploy"}]})
    names = [s.name for s in ws.config.services]
    with service.store.engine.begin() as conn:
        from shipline.store.schema import runs  # a bulk insert: the bench's own set-up

        now = time.time()
        from datetime import UTC, datetime

        conn.execute(runs.insert(), [
            {"workflow_id": f"bench-{i}", "pipeline": "deploy", "environment": "local",
             "services": {names[i % len(names)]: f"1.0.{i}"}, "params": {},
             "spec": spec.model_dump(mode="json"), "requested_by": "bench",
             "requested_at": datetime.fromtimestamp(now - (count - i), UTC),
             "phase": "succeeded", "cancel_requested": False}
            for i in range(count)
        ])  # fmt: skip


def _latencies(client: httpx.Client, ws: Workspace) -> dict[str, object]:
    for path in ("/api/v1/status", "/api/v1/runs", "/static/app.css"):
        client.get(path).raise_for_status()  # warm
    service = run_service(ws)
    return {
        "status": _time(lambda: client.get("/api/v1/status").raise_for_status()),
        "runsList": _time(lambda: client.get("/api/v1/runs").raise_for_status()),
        "staticFloor": _time(lambda: client.get("/static/app.css").raise_for_status()),
        "statusInProcess": _time(lambda: service_status(ws), 50),
        "runsListInProcess": _time(lambda: service.store.list_runs(limit=50), 50),
    }


def _live(url: str, headers: dict[str, str], ws: Workspace, pid: int) -> dict[str, object]:
    """CLIENTS live dashboards; a change a second for ten seconds."""
    arrived: list[float] = []
    lock = threading.Lock()
    ready = threading.Barrier(CLIENTS + 1)

    def listen() -> None:
        with contextlib.suppress(httpx.HTTPError), \
                httpx.Client(base_url=url, headers=headers, timeout=None) as own, \
                own.stream("GET", "/api/v1/events") as stream:  # fmt: skip
            first = True
            for line in stream.iter_lines():
                if not line.startswith("event: changed"):
                    continue
                if first:  # the stream's first event says where the store is now
                    first = False
                    ready.wait()
                    continue
                # as the page's script does: fetch the dashboard's content again
                own.get("/", headers={"X-Fragment": "1"}).raise_for_status()
                with lock:
                    arrived.append(time.perf_counter())

    for _ in range(CLIENTS):
        threading.Thread(target=listen, daemon=True).start()
    ready.wait(timeout=60)
    idle_before, _ = _usage(pid)
    time.sleep(5)
    idle_after, idle_rss = _usage(pid)
    service = run_service(ws)
    spec = PipelineSpec.model_validate({"kind": "deploy", "stages": [{"name": "d"}]})
    lags, reached = [], []
    cpu_before, _ = _usage(pid)
    window_start = time.perf_counter()
    for i in range(10):
        with lock:
            arrived.clear()
        changed = time.perf_counter()
        service.store.create_run(
            pipeline="deploy", environment="local", services={"auth-service": f"9.0.{i}"},
            params={}, spec=spec.model_dump(mode="json"), requested_by="bench",
        )  # fmt: skip
        while time.perf_counter() - changed < 1.0:
            time.sleep(0.02)
        with lock:
            got = list(arrived)
        reached.append(len(got))
        if got:
            lags.append(max(got) - changed)
    cpu_after, rss = _usage(pid)
    window = time.perf_counter() - window_start
    return {
        "clients": CLIENTS,
        "clientsReachedPerChange": reached,
        "idleCpuPercentOfACore": round(100 * (idle_after - idle_before) / 5, 1),
        "idleRssMB": round(idle_rss / 2**20),
        "cpuPercentOfACoreWithAChangeASecond": round(100 * (cpu_after - cpu_before) / window, 1),
        "rssMB": round(rss / 2**20),
        "changeToLastScreenMs": _percentiles(lags) if lags else None,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "quikapp"
        shutil.copytree(QUIKAPP, folder, ignore=shutil.ignore_patterns(".shipline"))
        env = {**os.environ, "SHIPLINE_HOME": str(Path(tmp) / "state"),
               "SHIPLINE_CONFIG": str(folder / "shipline.yaml")}  # fmt: skip
        env.pop("SHIPLINE_DATABASE_URL", None)
        ws = Workspace.open(folder / "shipline.yaml", environ=env)
        _fill(ws, RUNS)
        people = accounts(ws)
        people.add_user("bench", "correct horse battery staple", admin=True, actor="bench")
        _, token = people.create_token("bench", "bench", ["view"], 1, actor="bench")
        headers = {"Authorization": f"Bearer {token}"}
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen([EXE, "server", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            client = httpx.Client(base_url=url, headers=headers, timeout=30)
            for _ in range(300):
                try:
                    client.get("/login")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            figures = {"runsInStore": RUNS, **_latencies(client, ws),
                       "liveDashboards": _live(url, headers, ws, server.pid)}  # fmt: skip
            print(json.dumps(figures, indent=2))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
