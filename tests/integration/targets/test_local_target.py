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
        ServiceSpec(
            "local",
            "api",
            "1.0.0",
            env={"SECRET_TOKEN": "never-on-disk-123"},
            secret_names=frozenset({"SECRET_TOKEN"}),
        )
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


def _killed(target: LocalTarget) -> None:
    """What `kill -9` of the worker does to its target: the supervisor and the lock die with it."""
    import os

    target.supervisor._stop.set()
    for svc in target._services.values():
        svc.gateway.stop()  # its port is free again
    os.close(target._owner_fd)
    target._owner_fd = -1


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_a_successor_stops_the_orphans_and_restores_what_ran(tmp_path: Path) -> None:
    secret = "s3cr3t-never-on-disk-941"
    crashed = LocalTarget(tmp_path, health_timeout=8)
    spec = ServiceSpec(
        "local",
        "api",
        "1.0.0",
        replicas=2,
        env={"API_TOKEN": secret, "LOG_LEVEL": "debug"},
        secret_names=frozenset({"API_TOKEN"}),
    )
    crashed.apply(spec)
    from dataclasses import replace

    crashed.apply(replace(spec, version="1.1.0"))
    port = crashed.status("local", "api")["gatewayPort"]
    crashed.write_state()
    orphans = [r.process for r in crashed._services[("local", "api")].replicas]
    _killed(crashed)
    written = (tmp_path / "local-state.json").read_text()
    assert secret not in written and "debug" in written  # secret values are never written down
    successor = LocalTarget(tmp_path, health_timeout=8)
    try:
        assert successor.stale_stopped == 2
        for process in orphans:
            assert process is not None
            process.wait(timeout=10)
        asked: list[tuple[str, str]] = []

        def secrets(environment: str, service: str) -> dict[str, str]:
            asked.append((environment, service))
            return {"API_TOKEN": secret}

        assert successor.restore(secrets) == []
        assert asked == [("local", "api")]
        status = successor.status("local", "api")
        assert (status["version"], status["ready"], status["gatewayPort"]) == ("1.1.0", 2, port)
        assert status["revision"] == 2  # re-created, not a new revision
        assert _version(port) == "1.1.0"
        replica = successor._services[("local", "api")].replicas[0]
        assert replica.process is not None
        environ = _environ(replica.process.pid)
        assert (environ["API_TOKEN"], environ["LOG_LEVEL"]) == (secret, "debug")
        assert successor.rollback("local", "api", 1) == 3  # the history came back too
        assert _version(port) == "1.0.0"
        assert secret not in (tmp_path / "local-state.json").read_text()
    finally:
        successor.close()
        crashed.close()


def test_restore_names_what_it_cannot_bring_back(tmp_path: Path) -> None:
    first = LocalTarget(tmp_path, health_timeout=8)
    first.apply(
        ServiceSpec("qa", "api", "1.0.0", env={"K": "value-941"}, secret_names=frozenset({"K"}))
    )
    first.apply(ServiceSpec("qa", "web", "1.0.0"))
    first.write_state()
    first.close()  # a graceful stop: replicas stop, what ran stays recorded
    second = LocalTarget(tmp_path, health_timeout=8)
    try:
        problems = second.restore(lambda environment, service: {})
        assert len(problems) == 1 and "api in qa not restored" in problems[0]
        assert "K could not be resolved" in problems[0] and "value-941" not in problems[0]
        assert second.status("qa", "web")["ready"] == 1
    finally:
        second.close()


def test_one_live_owner_per_state_folder(tmp_path: Path) -> None:
    from shipline.targets.local.target import TargetBusy, owned

    assert not owned(tmp_path)
    first = LocalTarget(tmp_path)
    try:
        assert owned(tmp_path)
        with pytest.raises(TargetBusy, match="another process"):
            LocalTarget(tmp_path)
    finally:
        first.close()
    assert not owned(tmp_path)
