"""While a replica starts, the local daemon yields the CPU to it: its session's scheduling group
(Linux autogroup) is lowered, and set back once no replica is starting; a process that does not
lead its own session never changes the group it shares with others."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shipline.targets.local.supervisor import AUTOGROUP_ON

pytestmark = pytest.mark.skipif(
    not AUTOGROUP_ON.exists() or AUTOGROUP_ON.read_text().strip() != "1",
    reason="the kernel schedules without autogroup (kernel.sched_autogroup_enabled is not 1)",
)

PROBE = """
import os, sys
from shipline.targets.local.supervisor import Yielding
if sys.argv[1] == "leader":
    os.setsid()
def nice():  # the group's nice value; "" in the default group (init's session), not an autogroup
    line = open("/proc/self/autogroup").read().split()
    return line[-1] if line else ""
yielding = Yielding(True)
seen = [nice()]
with yielding.starting():
    seen.append(nice())
    with yielding.starting():  # two replicas starting at once
        seen.append(nice())
    seen.append(nice())
seen.append(nice())
yielding.close()
print(",".join(seen))
"""


def _seen(role: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, role], capture_output=True, text=True,
                          timeout=60, check=False, cwd=Path(__file__).parent)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(",")


def test_a_session_leader_yields_while_replicas_start_and_no_longer() -> None:
    assert _seen("leader") == ["0", "10", "10", "10", "0"]


def test_a_process_in_another_session_leaves_that_sessions_group_alone() -> None:
    # The group this test run shares; a run started outside any session of its own (a CI job
    # under init) is in the default group, which reads empty and cannot be changed.
    before = Path("/proc/self/autogroup").read_text()
    seen = _seen("member")
    assert len(seen) == 5 and set(seen) == {before.split()[-1] if before.split() else ""}
    assert Path("/proc/self/autogroup").read_text() == before
