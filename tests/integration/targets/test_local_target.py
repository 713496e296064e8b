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


def test_bad_canary_is_rolled_back_and_clients_see_errors_only_at_its_share(
    target: LocalTarget, tmp_path: Path
) -> None:
    import threading
    import urllib.error

    from shipline.domain.models import AnalysisThresholds

    target.apply(ServiceSpec("local", "api", "1.0.0", replicas=2))
    port = target.status("local", "api")["gatewayPort"]
    seen: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def client() -> None:
        import time

        while not stop.is_set():
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/echo", timeout=5
                ) as response:
                    seen.append(
                        (time.monotonic(), response.status, response.headers["X-Shipline-Version"])
                    )
            except urllib.error.HTTPError as exc:
                seen.append((time.monotonic(), exc.code, exc.headers["X-Shipline-Version"]))
            time.sleep(0.01)

    thread = threading.Thread(target=client)
    thread.start()
    lines: list[str] = []
    thresholds = AnalysisThresholds(max_error_rate=0.05, failure_limit=2, interval_seconds=1)
    try:
        with pytest.raises(CheckFailed, match="rolled back"):
            target.canary(
                ServiceSpec(
                    "local", "api", "2.0.0", replicas=2, env={"SHIPLINE_DEMO_ERROR_RATE": "0.5"}
                ),
                thresholds,
                steps=[50, 100],
                bake_seconds=5,
                log=lines.append,
            )
        import time

        rolled_back_at = time.monotonic()
        time.sleep(1)
    finally:
        stop.set()
        thread.join()
    errors = [(t, v) for t, status, v in seen if status >= 500]
    assert errors and all(v == "2.0.0" for _, v in errors), "only the canary's share errs"
    assert not [e for e in errors if e[0] > rolled_back_at], "no error after the rollback"
    # The share while the canary took traffic (its replicas' start-up time is not part of it).
    canary_from = min(t for t, _, v in seen if v == "2.0.0")
    during = [v for t, _, v in seen if canary_from <= t <= rolled_back_at]
    canary_share = during.count("2.0.0") / len(during)
    assert 0.3 < canary_share < 0.7, canary_share  # 50 % step
    assert target.status("local", "api")["version"] == "1.0.0"
    assert target.status("local", "api")["weights"] == {"1.0.0": 2}
    assert any("analysis failed" in line for line in lines)


def test_good_canary_is_promoted(target: LocalTarget) -> None:
    from shipline.domain.models import AnalysisThresholds

    target.apply(ServiceSpec("local", "api", "1.0.0"))
    revision = target.canary(
        ServiceSpec("local", "api", "1.1.0"),
        AnalysisThresholds(interval_seconds=0.5),
        steps=[50, 100],
        bake_seconds=0.5,
        probe_rps=80,
    )
    assert revision == 2
    assert target.status("local", "api")["version"] == "1.1.0"
    assert target.history("local", "api")[-1]["cause"] == "canary promoted"


def test_a_new_worker_stops_replicas_an_earlier_one_left_behind(tmp_path: Path) -> None:
    crashed = LocalTarget(
        tmp_path, health_timeout=8
    )  # stands for a worker killed with -9: never closed
    crashed.apply(ServiceSpec("local", "api", "1.0.0", replicas=2))
    processes = [r.process for r in crashed._services[("local", "api")].replicas]
    crashed.supervisor._stop.set()  # its supervisor dies with it
    successor = LocalTarget(tmp_path)
    try:
        assert successor.stale_stopped == 2
        for process in processes:
            assert process is not None
            process.wait(timeout=10)
        assert not (tmp_path / "local-state.json").exists()
    finally:
        successor.close()
        crashed.close()
