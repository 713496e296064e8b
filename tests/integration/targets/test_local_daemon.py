"""The local daemon outlives its workers, but not its state folder."""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from pathlib import Path

from shipline.domain.deploy import DeploySpec
from shipline.targets.local.client import LocalClient


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie waiting for its parent is gone too
        return stat.read().split(") ", 1)[1][0] != "Z"


def test_a_daemon_whose_state_folder_is_deleted_stops_its_services_and_exits(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    client = LocalClient(state)
    client.apply(DeploySpec("dev", "api", "1.0.0"), cause="deploy")
    address = client.observe("dev", "api").address
    assert address is not None
    with urllib.request.urlopen(f"{address}/health", timeout=5) as answer:
        assert answer.status == 200
    daemon = client.daemon_pid
    shutil.rmtree(state)
    end = time.monotonic() + 30
    while time.monotonic() < end and _alive(daemon):
        time.sleep(0.1)
    assert not _alive(daemon), "the daemon of a deleted state folder exited"
    try:
        urllib.request.urlopen(f"{address}/health", timeout=2)
        answered = True
    except OSError:
        answered = False
    assert not answered, "its services stopped with it"
