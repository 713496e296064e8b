"""The local target with real processes: rolling deploys, rollback, scale, restart, a
crash-looping version, health observation, and nothing left running afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from shipline.domain.deploy import DeploySpec
from shipline.domain.health import HealthBounds, healthy, verify_health
from shipline.errors import CheckFailed, NotFoundError, TargetError, Withdrawn
from shipline.targets.local.target import LocalTarget


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
        DeploySpec(
            "local",
            "api",
            "1.0.0",
            env={"SECRET_TOKEN": "never-on-disk-123"},
            secret_names=frozenset({"SECRET_TOKEN"}),
        )
    )
    assert first == 1
    port = target.observe("local", "api").address.rsplit(":", 1)[1]
    assert _version(port) == "1.0.0"
    assert target.plan(DeploySpec("local", "api", "1.1.0")).changes["version"] == {
        "from": "1.0.0",
        "to": "1.1.0",
    }
    assert target.apply(DeploySpec("local", "api", "1.1.0")) == 2
    assert _version(port) == "1.1.0"
    obs = target.health("local", "api", HealthBounds())
    assert healthy(verify_health(obs)), verify_health(obs)
    assert obs.lowest_available == 1  # the old replica served until the new one was healthy
    assert target.rollback("local", "api", revision=1) == 3
    assert _version(port) == "1.0.0"
    assert target.scale("local", "api", 3) == 4
    state = target.observe("local", "api")
    assert (state.desired, state.running, state.ready) == (3, 3, 3)
    assert target.restart("local", "api") == 5
    assert [r.cause for r in target.history("local", "api")] == [
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
    target.apply(DeploySpec("local", "web", "1.0.0"))
    port = target.observe("local", "web").address.rsplit(":", 1)[1]
    with pytest.raises(CheckFailed, match=r"crash-looping|not healthy"):
        target.apply(DeploySpec("local", "web", "2.0.0", env={"SHIPLINE_DEMO_CRASH_AT_START": "1"}))
    assert _version(port) == "1.0.0"
    assert target.observe("local", "web").version == "1.0.0"
    assert len(target.history("local", "web")) == 1


def test_a_failed_rollout_brings_back_the_replicas_it_retired_early(target: LocalTarget) -> None:
    """maxUnavailable 1, no surge: an old replica goes before its replacement starts; when the
    new version fails, the old version is back at its count."""
    target.apply(DeploySpec("qa", "web", "1.0.0", replicas=2))
    bad = DeploySpec("qa", "web", "2.0.0", replicas=2, max_surge=0, max_unavailable=1,
                     env={"SHIPLINE_DEMO_CRASH_AT_START": "1"})  # fmt: skip
    with pytest.raises(CheckFailed):
        target.apply(bad)
    state = target.observe("qa", "web")
    assert (state.version, state.desired, state.ready, state.running) == ("1.0.0", 2, 2, 2)


def test_a_rollout_whose_program_cannot_start_keeps_the_old_version(
    target: LocalTarget, tmp_path: Path
) -> None:
    target.apply(DeploySpec("qa", "web", "1.0.0", replicas=2))
    missing = [str(tmp_path / "no-such-program"), "--port", "{port}"]
    with pytest.raises(TargetError, match="cannot start"):
        target.apply(DeploySpec("qa", "web", "2.0.0", replicas=2, max_surge=0,
                                max_unavailable=1, command=missing))  # fmt: skip
    state = target.observe("qa", "web")
    assert (state.version, state.ready, state.running) == ("1.0.0", 2, 2)
    assert len(target.supervisor._replicas) == 2  # nothing of 2.0.0 left behind


def test_the_demo_workload_finds_shipline_through_its_folder_alone(target: LocalTarget) -> None:
    """Not through every entry of the target's own path (a working folder, the standard
    library twice ahead of its own place), which slowed each replica's start by a few %."""
    target.apply(DeploySpec("local", "api", "1.0.0"))
    replica = target._services[("local", "api")].replicas[0]
    assert replica.process is not None
    raw = Path(f"/proc/{replica.process.pid}/environ").read_bytes().split(b"\0")
    environ = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
    import shipline

    assert environ["PYTHONPATH"] == str(Path(shipline.__file__).resolve().parents[1])


def test_supervisor_restarts_a_crashed_replica(target: LocalTarget) -> None:
    import os
    import signal
    import time

    target.apply(DeploySpec("local", "api", "1.0.0"))
    replica = target._services[("local", "api")].replicas[0]
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGKILL)
    end = time.monotonic() + 10
    while time.monotonic() < end and not (replica.restarts >= 1 and replica.healthy()):
        time.sleep(0.1)
    assert replica.restarts == 1 and replica.healthy()


def test_down_stops_everything(target: LocalTarget) -> None:
    target.apply(DeploySpec("qa", "a", "1"))
    target.apply(DeploySpec("qa", "b", "1"))
    processes = [r.process for svc in target._services.values() for r in svc.replicas]
    assert target.stop("qa") == ["a", "b"]
    assert all(p is not None and p.poll() is not None for p in processes)
    with pytest.raises(NotFoundError):
        target.observe("qa", "a")


def test_a_canary_takes_its_weight_and_is_removed_without_a_gap(target: LocalTarget) -> None:
    """The target's part of a canary: a replica beside stable at the weight asked, errors only
    at the canary's share, and after removal every request on stable again, none failing."""
    import threading
    import time
    import urllib.error

    target.apply(DeploySpec("local", "api", "1.0.0", replicas=2))
    port = target.observe("local", "api").address.rsplit(":", 1)[1]
    seen: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def client() -> None:
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
    bad = DeploySpec("local", "api", "2.0.0", replicas=2, env={"SHIPLINE_DEMO_ERROR_RATE": "0.5"})
    try:
        assert target.set_canary(bad, 50) is True
        assert target.set_canary(bad, 50) is False  # already running: only the weight is set
        state = target.observe("local", "api")
        assert (state.version, state.canary, state.weights) == (
            "1.0.0", "2.0.0", {"1.0.0": 50, "2.0.0": 50},
        )  # fmt: skip
        time.sleep(2)
        assert target.end_canary(bad, promote=False) == 1
        removed_at = time.monotonic()
        time.sleep(1)
    finally:
        stop.set()
        thread.join()
    errors = [(t, v) for t, status, v in seen if status >= 500]
    assert errors and all(v == "2.0.0" for _, v in errors), "only the canary's share errs"
    assert not [e for e in errors if e[0] > removed_at], "no error after the removal"
    canary_from = min(t for t, _, v in seen if v == "2.0.0")
    during = [v for t, _, v in seen if canary_from <= t <= removed_at]
    assert 0.3 < during.count("2.0.0") / len(during) < 0.7
    assert [v for t, _, v in seen if t > removed_at] and all(
        v == "1.0.0" for t, _, v in seen if t > removed_at
    )
    state = target.observe("local", "api")
    assert (state.version, state.canary, state.weights) == ("1.0.0", None, {"1.0.0": 2})


def test_a_promoted_canary_becomes_a_revision(target: LocalTarget) -> None:
    target.apply(DeploySpec("local", "api", "1.0.0"))
    spec = DeploySpec("local", "api", "1.1.0")
    target.set_canary(spec, 10, probe_rps=20)
    assert target.end_canary(spec, promote=True) == 2
    state = target.observe("local", "api")
    assert (state.version, state.canary, state.weights) == ("1.1.0", None, {"1.1.0": 1})
    assert target.history("local", "api")[-1].cause == "canary promoted"


def test_a_failed_first_deploy_leaves_nothing(target: LocalTarget) -> None:
    with pytest.raises(CheckFailed):
        target.apply(DeploySpec("qa", "api", "1.0.0", env={"SHIPLINE_DEMO_CRASH_AT_START": "1"}))
    with pytest.raises(NotFoundError):
        target.observe("qa", "api")
    assert target.supervisor._replicas == []  # the failed replica was stopped too


def test_a_first_deploy_whose_program_cannot_start_leaves_nothing(
    target: LocalTarget, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-program")
    with pytest.raises(TargetError, match="cannot start"):
        target.apply(DeploySpec("qa", "api", "1.0.0", command=[missing, "--port", "{port}"]))
    with pytest.raises(NotFoundError):
        target.observe("qa", "api")
    assert target.services() == [] and target.supervisor._replicas == []


def test_a_first_deploy_is_known_with_its_gateway_listening(target: LocalTarget) -> None:
    target.apply(DeploySpec("qa", "api", "1.0.0"))
    state = target.observe("qa", "api")
    port = int(state.address.rsplit(":", 1)[1])
    assert port > 0 and _version(port) == "1.0.0"  # through the gateway


def test_the_disruption_budget_is_not_judged_on_a_first_deploy(target: LocalTarget) -> None:
    target.apply(DeploySpec("qa", "api", "1.0.0", replicas=3))
    first = target.health("qa", "api", HealthBounds(min_replicas=3, required_available=2))
    assert first.lowest_available is None and healthy(verify_health(first))
    target.apply(DeploySpec("qa", "api", "1.1.0", replicas=3))
    rolled = target.health("qa", "api", HealthBounds(min_replicas=3, required_available=2))
    assert rolled.lowest_available == 3 and healthy(verify_health(rolled))


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
    spec = DeploySpec(
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
    port = crashed.observe("local", "api").address.rsplit(":", 1)[1]
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

        def secrets(
            environment: str, service: str, parameters: Mapping[str, str]
        ) -> dict[str, str]:
            asked.append((environment, service))
            return {"API_TOKEN": secret}

        assert successor.restore(secrets) == []
        assert asked == [("local", "api")]
        status = successor.observe("local", "api")
        assert (status.version, status.ready, status.address) == (
            "1.1.0",
            2,
            f"http://127.0.0.1:{port}",
        )
        assert status.revision == 2  # re-created, not a new revision
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
        DeploySpec("qa", "api", "1.0.0", env={"K": "value-941"}, secret_names=frozenset({"K"}))
    )
    first.apply(DeploySpec("qa", "web", "1.0.0"))
    first.write_state()
    first.close()  # a graceful stop: replicas stop, what ran stays recorded
    second = LocalTarget(tmp_path, health_timeout=8)
    try:
        problems = second.restore(lambda environment, service, parameters: {})
        assert len(problems) == 1 and "api in qa not restored" in problems[0]
        assert "K could not be resolved" in problems[0] and "value-941" not in problems[0]
        assert second.observe("qa", "web").ready == 1
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


@pytest.mark.parametrize(
    ("surge", "unavailable", "lowest"),
    [(1, 0, 3), (0, 1, 2), (3, 0, 3)],
    ids=["surge-1", "unavailable-1", "surge-3"],
)
def test_a_rolling_update_keeps_to_max_surge_and_max_unavailable(
    target: LocalTarget, surge: int, unavailable: int, lowest: int
) -> None:
    target.apply(DeploySpec("qa", "api", "1.0.0", replicas=3))
    import threading

    svc = target._services[("qa", "api")]
    most: list[int] = []
    done = threading.Event()

    def count() -> None:  # replica processes alive during the rollout
        while not done.is_set():
            most.append(len(target.supervisor._replicas))
            done.wait(0.005)

    watcher = threading.Thread(target=count)
    watcher.start()
    try:
        target.apply(
            DeploySpec(
                "qa", "api", "1.1.0", replicas=3, max_surge=surge, max_unavailable=unavailable
            )
        )
    finally:
        done.set()
        watcher.join()
    assert svc.lowest_available == lowest
    assert max(most) <= 3 + surge, most
    state = target.observe("qa", "api")
    assert (state.version, state.ready) == ("1.1.0", 3)


OWN_APP = """import os, subprocess, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open("helper.pid", "w").write(str(helper.pid))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"own " + os.getcwd().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def test_a_services_own_command_runs_in_its_folder_and_is_found_after_a_crash(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "services" / "api"
    folder.mkdir(parents=True)
    (folder / "app.py").write_text(OWN_APP)
    state = tmp_path / "state"
    crashed = LocalTarget(state, health_timeout=8)
    spec = DeploySpec("local", "api", "1.0.0", health_path="/", command=[sys.executable, "app.py"],
                      workdir=str(folder))  # fmt: skip
    crashed.apply(spec)
    address = crashed.observe("local", "api").address
    with urllib.request.urlopen(f"{address}/", timeout=5) as answer:
        assert answer.read().decode() == f"own {folder}"  # its own process, in its folder
    crashed.write_state()
    replica = crashed._services[("local", "api")].replicas[0].process
    helper = int((folder / "helper.pid").read_text())
    _killed(crashed)
    successor = LocalTarget(state, health_timeout=8)
    try:
        assert successor.stale_stopped == 1
        assert replica is not None
        replica.wait(timeout=10)
        for _ in range(100):  # what it started went with it (its process group)
            if not Path(f"/proc/{helper}").exists() or "Z" in _state(helper):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the replica's child outlived the sweep")
        assert successor.restore(lambda *_: {}) == []
        with urllib.request.urlopen(f"{address}/", timeout=5) as answer:
            assert answer.read().decode() == f"own {folder}"  # restored with its folder
    finally:
        successor.close()
        crashed.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(helper, 9)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "gone"


def test_the_state_file_follows_a_rollout_and_close_writes_what_is_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = DeploySpec("local", "api", "1.0.0", health_path="/health")
    state_file = tmp_path / "one" / "local-state.json"
    target = LocalTarget(tmp_path / "one", health_timeout=8)
    try:
        target.apply(spec)  # its writer thread writes the file; the rollout does not wait
        for _ in range(200):
            if state_file.exists() and "local/api" in json.loads(state_file.read_text()):
                break
            time.sleep(0.05)
        assert json.loads(state_file.read_text())["local/api"]["version"] == "1.0.0"
    finally:
        target.close()

    # a writer that has not written yet when the target closes: close writes it
    monkeypatch.setattr(LocalTarget, "_write_state_when_wanted", lambda self: None)
    pending = LocalTarget(tmp_path / "two", health_timeout=8)
    try:
        pending.apply(spec)
        assert not (tmp_path / "two" / "local-state.json").exists()
    finally:
        pending.close()
    written = json.loads((tmp_path / "two" / "local-state.json").read_text())
    assert written["local/api"]["version"] == "1.0.0"


def _written_when_settled(target: LocalTarget, path: Path) -> dict[str, object]:
    """The state file once the target's writer has nothing pending."""
    for _ in range(200):
        with target._state_wanted:
            settled = not target._state_dirty
        if settled and path.exists():
            with target._state_written:  # a write in progress ends first
                found: dict[str, object] = json.loads(path.read_text())
            return found
        time.sleep(0.05)
    raise AssertionError("the state writer never settled")


def test_a_write_after_a_rollout_observes_only_what_changed_and_matches_a_whole_write(
    target: LocalTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_file = tmp_path / "local-state.json"
    for name in ("api", "web", "jobs"):
        target.apply(DeploySpec("local", name, "1.0.0", health_path="/health"))
    _written_when_settled(target, state_file)
    observed: list[str] = []
    real = LocalTarget.observe

    def counted(self: LocalTarget, environment: str, service: str, **kw: bool) -> object:
        observed.append(service)
        return real(self, environment, service, **kw)

    monkeypatch.setattr(LocalTarget, "observe", counted)
    target.apply(DeploySpec("local", "web", "2.0.0", health_path="/health"))
    after_rollout = _written_when_settled(target, state_file)
    writes = [s for s in observed if s != "web"]  # the rollout's own look at web aside
    assert writes == [], f"the write after web's rollout observed {writes} again"
    assert {k: v["version"] for k, v in after_rollout.items()} == {  # type: ignore[index]
        "local/api": "1.0.0", "local/jobs": "1.0.0", "local/web": "2.0.0"
    }  # fmt: skip
    target.stop("local", "jobs")
    target.write_state(probe=False)
    whole = json.loads(state_file.read_text())
    assert sorted(whole) == ["local/api", "local/web"]
    for key in whole:  # the same entry as the incremental write (readiness as last probed)
        if key in after_rollout:
            assert whole[key] == after_rollout[key]
    prometheus = json.loads((tmp_path / "prometheus-targets.json").read_text())
    assert [t["labels"]["service"] for t in prometheus] == ["api", "web"]


def test_a_restore_cut_short_leaves_the_state_file_naming_every_service(tmp_path: Path) -> None:
    first = LocalTarget(tmp_path, health_timeout=8)
    for name in ("api", "jobs", "web"):
        first.apply(DeploySpec("qa", name, "1.0.0"))
    first.write_state()
    first.close()
    state_file = tmp_path / "local-state.json"
    assert sorted(json.loads(state_file.read_text())) == ["qa/api", "qa/jobs", "qa/web"]

    class Killed(BaseException):
        """The process dying halfway through the restore."""

    def secrets(environment: str, service: str, parameters: Mapping[str, str]) -> dict[str, str]:
        if service == "jobs":
            raise Killed
        return {}

    second = LocalTarget(tmp_path, health_timeout=8)
    try:
        with pytest.raises(Killed):
            second.restore(secrets)
        assert second.observe("qa", "api").ready == 1  # restored before the cut
        time.sleep(0.5)  # time enough for the state writer, would it write
        written = _written_when_settled(second, state_file)
        assert sorted(written) == ["qa/api", "qa/jobs", "qa/web"]  # nothing forgotten
    finally:
        second._halt("qa", None)  # a crash: nothing is written on the way out
        second.supervisor.shutdown()
        os.close(second._owner_fd)  # the dead process's ownership lock goes with it
    third = LocalTarget(tmp_path, health_timeout=8)
    try:
        assert third.restore(lambda environment, service, parameters: {}) == []
        assert [s for _, s in third.services()] == ["api", "jobs", "web"]
    finally:
        third.close()


def test_a_rollout_goes_on_while_the_old_replica_drains_and_down_waits_for_it(
    target: LocalTarget,
) -> None:
    """The old replica of a rolling update finishes the request it is serving and then stops,
    in the background: the rollout does not wait for it (a Deployment's old pods terminate
    after it has moved on), and `down` stops nothing while a retired replica still drains."""
    import threading

    target.apply(DeploySpec("qa", "api", "1.0.0", env={"SHIPLINE_DEMO_LATENCY_MS": "4000"}))
    old = target._services[("qa", "api")].replicas[0].process
    assert old is not None
    port = target.observe("qa", "api").address.rsplit(":", 1)[1]
    answers: list[str] = []
    slow = threading.Thread(target=lambda: answers.append(_version(int(port))))
    slow.start()
    end = time.monotonic() + 5
    gateway = target._services[("qa", "api")].gateway
    while gateway.drain(target._services[("qa", "api")].replicas[0].port, timeout=0):
        assert time.monotonic() < end, "the slow request never reached the old replica"
        time.sleep(0.01)
    target.apply(DeploySpec("qa", "api", "2.0.0"))
    assert slow.is_alive(), "the rollout waited for the old replica's request"
    assert _version(int(port)) == "2.0.0"
    assert old.poll() is None  # still finishing its request
    target.stop("qa")  # waits for the old replica's drain and stop
    assert not slow.is_alive() and answers == ["1.0.0"]
    assert old.poll() is not None


def test_a_rollout_says_how_long_each_new_replica_took_to_start(target: LocalTarget) -> None:
    """Each new replica's line names its port and the seconds from its process start to its
    first healthy answer (the service's own start-up, apart from the rollout's)."""
    import re

    lines: list[str] = []
    began = time.monotonic()
    target.apply(DeploySpec("qa", "api", "1.0.0", replicas=2), log=lines.append)
    took = time.monotonic() - began
    said = [re.search(r"replica (\d)/2 healthy on :(\d+), (\d+\.\d{3}) s after it started", line)
            for line in lines]  # fmt: skip
    found = [m for m in said if m is not None]
    assert [m.group(1) for m in found] == ["1", "2"]
    ports = {r.port for r in target._services[("qa", "api")].replicas}
    assert {int(m.group(2)) for m in found} == ports
    assert all(0 < float(m.group(3)) <= took for m in found)


def _queue(target: LocalTarget, after: str, spec: DeploySpec, change: str) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    import threading

    got: dict[str, Any] = {}

    def run() -> None:
        try:
            got["revision"] = target.apply_after(after, spec, change=change)
        except Exception as exc:
            got["error"] = exc

    queued = threading.Thread(target=run)
    queued.start()
    return queued, got


def _appears(folder: Path) -> list[Path]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = list(folder.glob("*.log")) if folder.is_dir() else []
        if found:
            return found
        time.sleep(0.01)
    return []


def test_a_queued_rollout_readies_its_replica_while_it_waits(target: LocalTarget) -> None:
    """The first replica of a rollout queued behind another has its log file (and port) while
    that one is under way: between the two, only its process starts, and it writes there."""
    folder = target.state_dir / "logs" / "qa" / "web"
    with target._sequence.making("run-1/deploy/api"):  # the rollout before, under way
        queued, got = _queue(target, "run-1/deploy/api", DeploySpec("qa", "web", "1.0.0"),
                             "run-1/deploy/web")  # fmt: skip
        readied = _appears(folder)
        assert len(readied) == 1 and got == {}  # still queued
    queued.join(30)
    assert got == {"revision": 1}
    port = target._services[("qa", "web")].replicas[0].port
    assert readied[0].name == f"1.0.0-0-{port}.log"
    assert list(folder.glob("*.log")) == readied


def test_a_withdrawn_rollout_leaves_no_log_of_a_replica_that_never_started(
    target: LocalTarget,
) -> None:
    folder = target.state_dir / "logs" / "qa" / "web"
    queued, got = _queue(target, "run-2/deploy/api", DeploySpec("qa", "web", "1.0.0"),
                         "run-2/deploy/web")  # fmt: skip
    with contextlib.suppress(ZeroDivisionError), target._sequence.making("run-2/deploy/api"):
        assert len(_appears(folder)) == 1
        raise ZeroDivisionError  # the rollout before fails
    queued.join(30)
    assert isinstance(got.get("error"), Withdrawn), got
    assert list(folder.glob("*.log")) == []
    with pytest.raises(NotFoundError):
        target.observe("qa", "web")


def test_a_port_the_kernel_offers_again_goes_to_no_second_replica_or_gateway(
    target: LocalTarget,
) -> None:
    """The kernel offers the port of a replica that has not bound it yet again (it is free):
    the next replica and the gateways get others, and every service comes up."""
    from shipline.targets.local.supervisor import PortBook, free_port

    first = free_port()
    offered = iter([first, first, first, first, *(free_port() for _ in range(8))])
    target._ports = PortBook(find=lambda: next(offered))
    target.apply(DeploySpec("qa", "api", "1.0.0"))
    queued, got = _queue(target, "run-5/deploy/api", DeploySpec("qa", "web", "1.0.0"),
                         "run-5/deploy/web")  # fmt: skip
    with target._sequence.making("run-5/deploy/api"):
        pass
    queued.join(30)
    assert got == {"revision": 1}, got
    ports = [r.port for s in ("api", "web") for r in target._services[("qa", s)].replicas]
    gateways = [target._services[("qa", s)].gateway.port for s in ("api", "web")]
    assert ports[0] == first and len(set(ports + gateways)) == 4
    assert target.observe("qa", "web").ready == 1
