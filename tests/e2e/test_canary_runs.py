"""The canary as durable engine steps, through the CLI and real worker processes on the `memory`
target (its state is a file, so it outlives a killed worker as a cluster would):

- kill -9 of the worker at random moments of a canary: the run resumes at the step it was on (no
  step's progress goes back) and ends promoted (a good version) or rolled back (a bad one);
- `runs cancel` during a canary ends it and restores stable;
- a manual pause waits for `shipline canary promote`; `canary abort` rolls back; the requester
  may not promote their own run;
- too little traffic is inconclusive: the bake is extended, then `onInconclusive` acts.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.worker import EXE, running_worker, sh
from tests.engine_harness import memory_services

PROJECT = Path(__file__).parent / "projects" / "canary" / "shipline.yaml"
KILLS = 6


def _environ(home: Path, user: str = "ann") -> dict[str, str]:
    environ = {
        **os.environ,
        "SHIPLINE_CONFIG": str(PROJECT),
        "SHIPLINE_HOME": str(home),
        "SHIPLINE_USER": user,
    }
    environ.pop("SHIPLINE_DATABASE_URL", None)
    return environ


def _memory(home: Path) -> dict[str, Any]:
    return {"services": memory_services(home)}


def _show(env: dict[str, str], run: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sh(env, "runs", "show", str(run), "--json").stdout)
    return data


def _wait(env: dict[str, str], run: int, timeout: float = 120) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        data = _show(env, run)
        if data["phase"] in ("succeeded", "failed", "errored", "cancelled"):
            return data
        time.sleep(0.2)
    raise AssertionError(f"run {run} did not end: {_show(env, run)}")


def _start(env: dict[str, str], *args: str) -> int:
    done = sh(env, "deploy", *args, "--detach", "--json")
    assert done.returncode == 3, done.stderr
    return int(json.loads(done.stdout)["run"])


def _progress(env: dict[str, str], run: int) -> list[int]:
    """The canary step numbers the run recorded, in order."""
    logs = json.loads(sh(env, "runs", "logs", str(run), "--json").stdout)["logs"]
    return [int(m.group(1)) for line in logs if (m := re.match(r"step (\d+)/\d+:", line["line"]))]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [EXE, "worker", "--poll-seconds", "0.1"], env=env, stdout=out, stderr=out
        )


def _until_running(worker: subprocess.Popen[bytes], log: Path, starts: int) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if log.exists() and log.read_text().count(" running (pid") >= starts:
            return
        assert worker.poll() is None, log.read_text()
        time.sleep(0.02)
    raise AssertionError(log.read_text())


def crash_seed() -> tuple[int, random.Random]:
    """The seed of a test's random kill moments (CRASH_SEED repeats a run), and its generator."""
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1_000_000)))
    return seed, random.Random(seed)


def kill_while_running(
    env: dict[str, str],
    log: Path,
    started: tuple[subprocess.Popen[bytes], int],
    run: int,
    rng: random.Random,
    kills: tuple[int, float, float],
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """kill -9 the worker (`started`: it, and how many workers the log has seen start) at
    random moments of `run`, up to `kills[0]` times, `kills[1]` to `kills[2]` seconds apart,
    a new worker started after each; the last worker, and the run once it ended."""
    worker, starts = started
    times, shortest, longest = kills
    for _ in range(times):
        time.sleep(rng.uniform(shortest, longest))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        if _show(env, run)["phase"] not in ("running", "waiting", "pending"):
            break
        worker = _worker(env, log)
        starts += 1
        _until_running(worker, log, starts)
    if worker.poll() is not None:
        worker = _worker(env, log)
    return worker, _wait(env, run)


@pytest.mark.parametrize(
    ("version", "error_rate", "phase", "stays"),
    [("2.0.0", "0", "succeeded", "2.0.0"), ("3.0.0", "0.5", "failed", "1.0.0")],
    ids=["good-is-promoted", "bad-is-rolled-back"],
)
def test_kill_9_during_a_canary_resumes_at_its_step(
    home: Path, tmp_path: Path, version: str, error_rate: str, phase: str, stays: str
) -> None:
    env = _environ(home)
    log = tmp_path / "worker.log"
    seed, rng = crash_seed()
    worker = _worker(env, log)
    try:
        _until_running(worker, log, 1)
        first = _start(env, "--env", "dev", "--services", "api", "--tag", "1.0.0")
        shown = _wait(env, first)
        assert shown["phase"] == "succeeded"  # a first deploy: no canary, and its step says so
        (deploy,) = [s for s in shown["stages"] if s["name"] == "deploy"]
        assert deploy["steps"][0]["note"] == "rolling update (first deploy: no canary)"
        assert "note" not in deploy["outputs"]  # a step's note is not passed on
        run = _start(
            env, "--env", "dev", "--services", "api", "--tag", version,
            "--set", f"FAKE_ERROR_RATE={error_rate}",
        )  # fmt: skip
        worker, data = kill_while_running(env, log, (worker, 1), run, rng, (KILLS, 0.1, 0.6))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert data["phase"] == phase, f"seed {seed}: {data['reason']}"
    service = _memory(home)["services"]["dev/api"]
    assert (service["spec"]["version"], service["canary"]) == (stays, None), f"seed {seed}"
    steps = _progress(env, run)
    assert steps == sorted(steps), f"seed {seed}: a step's progress never goes back: {steps}"
    assert all(steps.count(s) <= 2 for s in set(steps)), f"seed {seed}: {steps}"
    if phase == "failed":
        assert "rolled back" in data["reason"]


def test_cancel_during_a_canary_restores_stable(home: Path, tmp_path: Path) -> None:
    with running_worker(PROJECT, home, "ann", tmp_path / "worker.log") as env:
        run = _qa_canary_started(env, home)
        assert sh(env, "runs", "cancel", str(run), "--reason", "enough").returncode == 0
        data = _wait(env, run)
    assert data["phase"] == "cancelled"
    service = _memory(home)["services"]["qa/api"]
    assert (service["spec"]["version"], service["canary"]) == ("1.0.0", None)


def _qa_canary_started(env: dict[str, str], home: Path) -> int:
    """qa at 1.0.0 (approved), then a run of 1.1.0 approved and its canary started."""
    first = _start(env, "--env", "qa", "--services", "api", "--tag", "1.0.0")
    _approve(env, first)
    assert _wait(env, first)["phase"] == "succeeded"
    run = _start(env, "--env", "qa", "--services", "api", "--tag", "1.1.0")
    _approve(env, run)
    _until_canary(home, "1.1.0")
    return run


def _approve(env: dict[str, str], run: int) -> None:
    """Approve `run` once it waits for it (a worker takes a detached run a moment later)."""
    end = time.monotonic() + 60
    while (voted := sh(env, "approve", str(run), "--as", "lee")).returncode != 0:
        assert "nothing in run" in voted.stderr and time.monotonic() < end, voted.stderr
        time.sleep(0.2)


def _until_canary(home: Path, version: str) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            canary = _memory(home)["services"]["qa/api"]["canary"]
        except (FileNotFoundError, KeyError, ValueError):
            canary = None
        if canary and canary["spec"]["version"] == version:
            return
        time.sleep(0.1)
    raise AssertionError("the canary never started")


def test_a_manual_pause_waits_for_a_person(home: Path, tmp_path: Path) -> None:
    with running_worker(PROJECT, home, "ann", tmp_path / "worker.log") as env:
        run = _qa_canary_started(env, home)
        time.sleep(1)  # paused: it must still be at 10 %
        assert _memory(home)["services"]["qa/api"]["canary"]["weight"] == 10
        step = next(
            s for st in _show(env, run)["stages"] for s in st["steps"] if s["name"] == "api"
        )
        assert (step["canary"]["weight"], step["canary"]["step"], step["canary"]["of"]) == (
            10,
            2,
            4,
        )
        refused = sh(env, "canary", "promote", str(run), "--as", "ann")
        assert refused.returncode == 2 and "approver group" in refused.stderr
        outsider = sh(env, "canary", "promote", str(run), "--as", "mallory")
        assert outsider.returncode == 2
        assert sh(env, "canary", "promote", str(run), "--as", "lee").returncode == 0
        assert _wait(env, run)["phase"] == "succeeded"
        assert _memory(home)["services"]["qa/api"]["spec"]["version"] == "1.1.0"
        again = _start(env, "--env", "qa", "--services", "api", "--tag", "1.2.0")
        _approve(env, again)
        _until_canary(home, "1.2.0")
        assert sh(env, "canary", "abort", str(again), "--as", "lee").returncode == 0
        data = _wait(env, again)
        audit = sh(env, "audit", "list", "--json").stdout
    assert data["phase"] == "failed" and "aborted" in data["reason"]
    assert _memory(home)["services"]["qa/api"]["spec"]["version"] == "1.1.0"
    assert "canary.promote" in audit and "canary.abort" in audit and "canary.refused" in audit


def test_too_little_traffic_is_inconclusive_never_failed(home: Path, tmp_path: Path) -> None:
    with running_worker(PROJECT, home, "ann", tmp_path / "worker.log") as env:
        assert _wait(env, _start(env, "--env", "uat1", "--services", "api", "--tag", "1.0.0"))
        run = _start(
            env, "--env", "uat1", "--services", "api", "--tag", "1.1.0",
            "--set", "FAKE_REQUESTS=3",
        )  # fmt: skip
        data = _wait(env, run)
        logs = json.loads(sh(env, "runs", "logs", str(run), "--json").stdout)["logs"]
    lines = [entry["line"] for entry in logs]
    assert data["phase"] == "failed" and "inconclusive" in data["reason"], data["reason"]
    assert not any("analysis failed" in line for line in lines)
    # 2 planned intervals (0.6 s bake / 0.3 s) and 2 extra ones, all inconclusive.
    assert sum("analysis inconclusive" in line for line in lines) == 4, lines


@pytest.fixture(autouse=True)
def _no_worker_left(tmp_path: Path) -> Iterator[None]:
    yield
    out = subprocess.run(
        ["pgrep", "-af", f"{tmp_path}"], capture_output=True, text=True, check=False
    )
    assert "shipline worker" not in out.stdout
