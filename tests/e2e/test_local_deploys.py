"""The local target through the CLI and a real worker: deploy 3 services, rolling upgrade, a bad
canary rolled back automatically, rollback to revision 1, scale, restart, a crash-looping version
refused, and no process left behind."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.worker import running_worker, sh

PROJECT = Path(__file__).parent / "projects" / "local" / "shipline.yaml"


def _workloads(marker: str) -> list[str]:
    out = subprocess.run(
        ["pgrep", "-af", "shipline.targets.local.workload"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line for line in out.stdout.splitlines() if marker in line]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with running_worker(PROJECT, tmp_path / "state", "dev", tmp_path / "worker.log") as environ:
        yield environ
    assert _workloads(str(tmp_path)) == [], "no process is left behind"


def _status(env: dict[str, str], environment: str) -> dict[str, dict[str, object]]:
    rows = json.loads(sh(env, "status", "--env", environment, "--json").stdout)
    return {row["service"]: row for row in rows}


def _version(port: object) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=5) as response:
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
    port = status["api"]["gatewayPort"]
    assert sh(env, "deploy", "--env", "dev", "--services", "api", "--tag", "1.1.0").returncode == 0
    assert _version(port) == "1.1.0"
    back = sh(env, "rollback", "--env", "dev", "--services", "api", "--revision", "1", "--json")
    assert back.returncode == 0, back.stdout
    assert _version(port) == "1.0.0"
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
