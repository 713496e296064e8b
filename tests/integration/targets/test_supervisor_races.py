"""The supervisor never leaves a process behind: a restart that was under way when the replica
was removed, or the supervisor shut down, is stopped with it (it used to be started after the
stop and left running, unowned)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from shipline.targets.local import supervisor as module
from shipline.targets.local.supervisor import Replica, Supervisor


def _crashing(tmp_path: Path) -> Replica:
    return Replica(
        "api", "1", module.free_port(), [sys.executable, "-c", "import time; time.sleep(600)"],
        {}, tmp_path / "api.log", "/health",
    )  # fmt: skip


@pytest.mark.parametrize("ending", ["remove", "shutdown"])
def test_a_restart_under_way_is_stopped_with_its_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    monkeypatch.setattr(module, "BACKOFF_START", 0.05)
    watch = Supervisor(interval=0.02)
    replica = _crashing(tmp_path)
    watch.add(replica)
    first = replica.process
    assert first is not None
    restarting, release = threading.Event(), threading.Event()
    original = Replica.start

    def slow_start(self: Replica) -> None:  # the watch's restart, caught in the middle
        restarting.set()
        release.wait(10)
        original(self)

    monkeypatch.setattr(Replica, "start", slow_start)
    first.kill()
    first.wait(10)
    assert restarting.wait(10), "the watch never restarted the crashed replica"
    ender = threading.Thread(
        target=(lambda: watch.remove(replica)) if ending == "remove" else watch.shutdown
    )
    ender.start()
    time.sleep(0.2)  # the removal or shutdown is waiting for, or racing, the restart
    release.set()
    ender.join(10)
    if ending == "remove":
        watch.shutdown()
    time.sleep(0.3)
    process = replica.process
    alive = process is not None and process.poll() is None
    if process is not None and alive:  # not left behind by the test either
        process.kill()
        process.wait(10)
    assert not alive, "a replica outlived its supervisor"
