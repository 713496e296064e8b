"""The local target through the CLI and a real worker: deploy 3 services, rolling upgrade, a bad
canary rolled back automatically, rollback to revision 1, scale, restart, a crash-looping version
refused, and no process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.worker import EXE, running_worker, sh

PROJECT = Path(__file__).parent / "projects" / "local" / "shipline.yaml"


def _workloads(marker: str) -> list[str]:
    out = subprocess.run(
        ["pgrep", "-af", "shipline.targets.local.workload"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line for line in out.stdout.splitlines() if marker in line]


TOKEN = "tok-e2e-restored-7731"


def _set_token(environ: dict[str, str]) -> None:
    done = subprocess.run(
        [EXE, "secrets", "set", "DEV-API-TOKEN"],
        input=TOKEN + "\n",
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with running_worker(PROJECT, tmp_path / "state", "dev", tmp_path / "worker.log") as environ:
        _set_token(environ)
        yield environ
    assert _workloads(str(tmp_path)) == [], "no process is left behind"


def _status(env: dict[str, str], environment: str) -> dict[str, dict[str, object]]:
    rows = json.loads(sh(env, "status", "--env", environment, "--json").stdout)
    return {row["service"]: row for row in rows}


def _version(address: object) -> str:
    with urllib.request.urlopen(f"{address}/version", timeout=5) as response:
        return str(json.loads(response.read())["version"])


def test_local_lifecycle(env: dict[str, str], tmp_path: Path) -> None:
    first = sh(env, "deploy", "--env", "dev", "--tag", "1.0.0", "--json")
    assert first.returncode == 0, first.stderr + first.stdout
    status = _status(env, "dev")
    assert {s: (r["version"], r["health"]) for s, r in status.items()} == {
        "api": ("1.0.0", "healthy"),
        "web": ("1.0.0", "healthy"),
        "jobs": ("1.0.0", "healthy"),
    }
    address = status["api"]["address"]
    assert sh(env, "deploy", "--env", "dev", "--services", "api", "--tag", "1.1.0").returncode == 0
    assert _version(address) == "1.1.0"
    back = sh(env, "rollback", "--env", "dev", "--services", "api", "--revision", "1", "--json")
    assert back.returncode == 0, back.stdout
    assert _version(address) == "1.0.0"
    assert sh(env, "scale", "--env", "dev", "--services", "api", "--replicas", "3").returncode == 0
    assert (_status(env, "dev")["api"]["ready"], _status(env, "dev")["api"]["desired"]) == (3, 3)
    assert sh(env, "restart", "--env", "dev", "--services", "api").returncode == 0
    crash = sh(
        env,
        "deploy",
        "--env",
        "dev",
        "--services",
        "web",
        "--tag",
        "6.6.6",
        "--set",
        "shiplineDemoCrashAtStart=1",
        "--json",
    )
    assert crash.returncode == 1
    data = json.loads(crash.stdout)
    assert {s["name"]: s["phase"] for s in data["stages"]}["deploy"] == "failed"
    assert "crash-looping" in data["reason"] or "not healthy" in data["reason"]
    assert _status(env, "dev")["web"]["version"] == "1.0.0"
    logs = sh(env, "logs", "--env", "dev", "--service", "web")
    assert "crashing at start" in logs.stdout
    # every command that waited on its run's bell took its name away when it ended
    assert list((tmp_path / "state" / "followers").iterdir()) == []


def test_a_service_queued_behind_one_that_fails_is_not_started(env: dict[str, str]) -> None:
    """A rolling deploy queues each service behind the one before at the target (ADR 0022):
    when that one fails, the queued one does nothing and shows as skipped, saying why."""
    assert sh(env, "deploy", "--env", "dev", "--tag", "1.0.0").returncode == 0
    bad = sh(env, "deploy", "--env", "dev", "--services", "api,web", "--tag", "6.6.6",
             "--set", "shiplineDemoCrashAtStart=1", "--json")  # fmt: skip
    assert bad.returncode == 1, bad.stdout + bad.stderr
    data = json.loads(bad.stdout)
    deploy = next(s for s in data["stages"] if s["name"] == "deploy")
    steps = {s["name"]: (s["phase"], s["error"] or "") for s in deploy["steps"]}
    assert steps["api"][0] == "failed"
    assert steps["web"][0] == "skipped"
    assert (
        steps["web"][1]
        == f"not started: the change it was queued behind (run-{data['id']}/deploy/api) did not succeed"
    )
    assert deploy["phase"] == "failed" and "api" in data["reason"]
    assert {s: r["version"] for s, r in _status(env, "dev").items()} == {
        "api": "1.0.0", "web": "1.0.0", "jobs": "1.0.0"
    }  # fmt: skip
    history = json.loads(sh(env, "history", "--env", "dev", "--service", "web", "--json").stdout)
    assert [entry["version"] for entry in history] == ["1.0.0"]  # nothing was made for web


def test_bad_canary_rolls_back_automatically(env: dict[str, str]) -> None:
    assert (
        sh(env, "deploy", "--env", "canary", "--services", "api", "--tag", "1.0.0").returncode == 0
    )
    bad = sh(
        env,
        "deploy",
        "--env",
        "canary",
        "--services",
        "api",
        "--tag",
        "2.0.0",
        "--set",
        "shiplineDemoErrorRate=0.5",
        "--json",
    )
    assert bad.returncode == 1
    data = json.loads(bad.stdout)
    phases = {s["name"]: s["phase"] for s in data["stages"]}
    assert phases["deploy"] == "failed" and "rolled back" in data["reason"]
    status = _status(env, "canary")["api"]
    assert status["version"] == "1.0.0" and status["health"] == "healthy"
    logs = json.loads(sh(env, "runs", "logs", str(data["id"]), "--json").stdout)
    assert any("analysis failed" in line["line"] for line in logs["logs"])
    good = sh(env, "deploy", "--env", "canary", "--services", "api", "--tag", "2.1.0", "--json")
    assert good.returncode == 0, good.stdout
    assert _status(env, "canary")["api"]["version"] == "2.1.0"
    down = sh(env, "down", "--env", "canary")
    assert down.returncode == 0
    time.sleep(0.5)


def _replica_pids(marker: str) -> list[int]:
    return [int(line.split()[0]) for line in _workloads(marker)]


def _wait_until(check: Callable[[], bool], seconds: float = 90) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.3)
    return False


def test_services_outlive_a_killed_worker_and_come_back_after_a_stop(tmp_path: Path) -> None:
    """`kill -9` of the worker: the services keep serving (the same processes) and the next
    worker takes them over. A graceful stop stops them; the next worker re-creates them with
    their secrets fetched from the store again, never from disk."""
    home = tmp_path / "state"
    environ = {
        **os.environ,
        "SHIPLINE_CONFIG": str(PROJECT),
        "SHIPLINE_HOME": str(home),
        "SHIPLINE_USER": "dev",
    }
    environ.pop("SHIPLINE_DATABASE_URL", None)
    _set_token(environ)

    def start(log: str) -> subprocess.Popen[bytes]:
        with open(tmp_path / log, "wb") as out:
            return subprocess.Popen(
                [EXE, "worker", "--poll-seconds", "0.1"], env=environ, stdout=out, stderr=out
            )

    def healthy() -> bool:
        return {r["health"] for r in _status(environ, "dev").values()} == {"healthy"}

    first = start("first.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        deployed = sh(environ, "deploy", "--env", "dev", "--tag", "1.0.0", "--json")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert (
            sh(environ, "deploy", "--env", "dev", "--services", "api", "--tag", "1.1.0").returncode
            == 0
        )
        before = _status(environ, "dev")
        serving = _replica_pids(str(home))
        assert len(serving) == 3
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert healthy(), _status(environ, "dev")  # nothing stopped with the worker
        assert _version(before["api"]["address"]) == "1.1.0"
        second = start("second.log")
        deployed = sh(environ, "deploy", "--env", "dev", "--services", "web", "--tag", "1.2.0")
        assert deployed.returncode == 0, deployed.stdout + (tmp_path / "second.log").read_text()
        kept = [p for p in serving if p in _replica_pids(str(home))]
        assert len(kept) == 2  # api and jobs: the very same processes; web was redeployed
        assert sh(environ, "worker", "--stop").returncode == 0
        second.wait(timeout=60)
        assert {r["health"] for r in _status(environ, "dev").values()} == {"stopped (no worker)"}
        assert _replica_pids(str(home)) == []
        second = start("third.log")
        assert _wait_until(healthy), (tmp_path / "third.log").read_text()
        after = _status(environ, "dev")
        for name in ("api", "jobs"):  # same versions, same addresses, same history
            assert (after[name]["version"], after[name]["address"], after[name]["revision"]) == (
                before[name]["version"], before[name]["address"], before[name]["revision"],
            )  # fmt: skip
        assert _version(after["api"]["address"]) == "1.1.0"
        replicas = _replica_pids(str(home))
        assert len(replicas) == 3 and not set(replicas) & set(serving)
        environ_of = Path(f"/proc/{replicas[0]}/environ").read_bytes()
        assert f"API_TOKEN={TOKEN}".encode() in environ_of  # the secret came from the store again
        on_disk = [f for f in home.rglob("*") if f.is_file() and f.name not in {"secrets.enc"}]
        assert not [f for f in on_disk if TOKEN.encode() in f.read_bytes()]
        back = sh(environ, "rollback", "--env", "dev", "--services", "api", "--json")
        assert back.returncode == 0, back.stdout
        assert _version(after["api"]["address"]) == "1.0.0"
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=60)
    assert _wait_until(lambda: _workloads(str(home)) == [], 20), "no process is left behind"


@pytest.mark.parametrize(
    ("tag", "error_rate", "phase"),
    [("2.0.0", "0", "succeeded"), ("3.0.0", "0.5", "failed")],
    ids=["good-is-promoted", "bad-is-rolled-back"],
)
def test_kill_9_during_a_local_canary_never_interrupts_stable(
    tmp_path: Path, tag: str, error_rate: str, phase: str
) -> None:
    """Workers killed with -9 at random moments of a canary on real processes: the run resumes
    where it was and ends as the version deserves, while a client hitting the gateway the whole
    time never finds the stable version unavailable."""
    import random
    import threading
    import urllib.error

    home = tmp_path / "state"
    environ = {**os.environ, "SHIPLINE_CONFIG": str(PROJECT), "SHIPLINE_HOME": str(home),
               "SHIPLINE_USER": "dev"}  # fmt: skip
    environ.pop("SHIPLINE_DATABASE_URL", None)
    _set_token(environ)
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1_000_000)))
    rng = random.Random(seed)

    def start() -> subprocess.Popen[bytes]:
        with open(tmp_path / "worker.log", "ab") as out:
            return subprocess.Popen(
                [EXE, "worker", "--poll-seconds", "0.1"], env=environ, stdout=out, stderr=out
            )

    worker = start()
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()
    try:
        first = sh(environ, "deploy", "--env", "slow-canary", "--services", "api", "--tag", "1.0.0")
        assert first.returncode == 0, first.stdout
        address = _status(environ, "slow-canary")["api"]["address"]

        def client() -> None:
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(f"{address}/api/echo", timeout=10) as response:
                        response.read()
                        seen.append((response.status, response.headers["X-Shipline-Version"]))
                except urllib.error.HTTPError as exc:
                    seen.append((exc.code, exc.headers["X-Shipline-Version"]))
                except OSError:
                    seen.append((0, None))  # unavailable
                time.sleep(0.01)

        thread = threading.Thread(target=client)
        thread.start()
        started = sh(
            environ, "deploy", "--env", "slow-canary", "--services", "api", "--tag", tag,
            "--set", f"shiplineDemoErrorRate={error_rate}", "--detach", "--json",
        )  # fmt: skip
        run = int(json.loads(started.stdout)["run"])
        kills_landed = 0
        for _ in range(int(os.environ.get("CANARY_KILLS", "3"))):  # 20 for the check
            time.sleep(rng.uniform(0.3, 2.0))
            landed = json.loads(sh(environ, "runs", "show", str(run), "--json").stdout)
            kills_landed += landed["phase"] in ("running", "waiting", "pending")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
            worker = start()
        end = time.monotonic() + 180
        while time.monotonic() < end:
            data = json.loads(sh(environ, "runs", "show", str(run), "--json").stdout)
            if data["phase"] in ("succeeded", "failed", "errored", "cancelled"):
                break
            time.sleep(0.3)
        time.sleep(1)
        stop.set()
        thread.join()
    finally:
        stop.set()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert data["phase"] == phase, f"seed {seed}: {data['reason']}"
    assert kills_landed >= 1, f"seed {seed}: no kill landed during the run"
    print(f"seed {seed}: {kills_landed} kill(s) during the run, {len(seen)} requests")
    assert seen and not [s for s in seen if s[0] == 0], f"seed {seed}: the gateway went away"
    stable_errors = [s for s in seen if s[1] == "1.0.0" and s[0] >= 500]
    assert not stable_errors, f"seed {seed}: stable answered {stable_errors[:3]}"
    assert {v for _, v in seen} <= {"1.0.0", tag}
    steps = [
        int(line["line"].split("/")[0].split()[-1])
        for line in json.loads(sh(environ, "runs", "logs", str(run), "--json").stdout)["logs"]
        if line["line"].startswith("step ")
    ]
    assert steps == sorted(steps), f"seed {seed}: a step's progress never goes back: {steps}"
