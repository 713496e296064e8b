"""The local target with real processes: rolling deploys, rollback, scale, restart, a
crash-looping version, health observation, and nothing left running afterwards."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipline.domain.health import healthy, verify_health
from shipline.errors import CheckFailed, NotFoundError
from shipline.targets.local.target import LocalTarget, ServiceSpec


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LocalTarget]:
    local = LocalTarget(tmp_path, health_timeout=8)
    yield local
    local.close()


def _version(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=5) as response:
        return str(json.loads(response.read())["version"])


def test_deploy_upgrade_rollback_scale_restart(target: LocalTarget) -> None:
    first = target.apply(
        ServiceSpec("local", "api", "1.0.0", env={"SECRET_TOKEN": "never-on-disk-123"})
    )
    assert first == 1
    port = target.status("local", "api")["gatewayPort"]
    assert _version(port) == "1.0.0"
    assert target.plan(ServiceSpec("local", "api", "1.1.0"))["changes"]["version"] == {
        "from": "1.0.0",
        "to": "1.1.0",
    }
    assert target.apply(ServiceSpec("local", "api", "1.1.0")) == 2
    assert _version(port) == "1.1.0"
    obs = target.observe("local", "api")
    assert healthy(verify_health(obs)), verify_health(obs)
    assert obs.lowest_available == 1  # the old replica served until the new one was healthy
    assert target.rollback("local", "api", revision=1) == 3
    assert _version(port) == "1.0.0"
    assert target.scale("local", "api", 3) == 4
    state = target.status("local", "api")
    assert (state["desired"], state["running"], state["ready"]) == (3, 3, 3)
    assert target.restart("local", "api") == 5
    assert [r["cause"] for r in target.history("local", "api")] == [
        "deploy",
        "deploy",
        "rollback to revision 1",
        "scale to 3",
        "restart",
    ]
    target.write_state()
    assert "never-on-disk-123" not in "".join(
        p.read_text(errors="replace") for p in target.state_dir.rglob("*") if p.is_file()
    )


def test_crash_looping_version_fails_and_the_old_one_keeps_serving(target: LocalTarget) -> None:
    target.apply(ServiceSpec("local", "web", "1.0.0"))
    port = target.status("local", "web")["gatewayPort"]
    with pytest.raises(CheckFailed, match=r"crash-looping|not healthy"):
        target.apply(
            ServiceSpec("local", "web", "2.0.0", env={"SHIPLINE_DEMO_CRASH_AT_START": "1"})
        )
    assert _version(port) == "1.0.0"
    assert target.status("local", "web")["version"] == "1.0.0"
    assert len(target.history("local", "web")) == 1


def test_supervisor_restarts_a_crashed_replica(target: LocalTarget) -> None:
    import os
    import signal
    import time

    target.apply(ServiceSpec("local", "api", "1.0.0"))
    replica = target._services[("local", "api")].replicas[0]
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGKILL)
    end = time.monotonic() + 10
    while time.monotonic() < end and not (replica.restarts >= 1 and replica.healthy()):
        time.sleep(0.1)
    assert replica.restarts == 1 and replica.healthy()


def test_down_stops_everything(target: LocalTarget) -> None:
    target.apply(ServiceSpec("qa", "a", "1"))
    target.apply(ServiceSpec("qa", "b", "1"))
    processes = [r.process for svc in target._services.values() for r in svc.replicas]
    assert target.down("qa") == ["a", "b"]
    assert all(p is not None and p.poll() is not None for p in processes)
    with pytest.raises(NotFoundError):
        target.status("qa", "a")
