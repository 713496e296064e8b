"""One worker per id and state folder: a second one is refused at start (exit 2) and leaves the
first one's pid file alone, so `worker --stop` still finds the first. The pid file appears whole
(no reader sees it empty), and `worker --stop` says what is wrong with one that holds no pid."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.e2e.worker import EXE, sh

PROJECT = Path(__file__).parent / "projects" / "memory" / "shipline.yaml"


def test_a_second_worker_with_the_same_id_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "SHIPLINE_CONFIG": str(PROJECT), "SHIPLINE_HOME": str(tmp_path)}
    env.pop("SHIPLINE_DATABASE_URL", None)
    with open(tmp_path / "first.log", "wb") as out:
        first = subprocess.Popen([EXE, "worker", "--poll-seconds", "0.1"], env=env, stdout=out,
                                 stderr=out)  # fmt: skip
    try:
        pid_file = tmp_path / "worker-local.pid"
        end = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < end:
            time.sleep(0.05)
        assert pid_file.read_text() == str(first.pid)
        assert [p.name for p in tmp_path.glob(".worker-local.pid*")] == []  # no scratch left
        second = subprocess.run(
            [EXE, "worker"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert second.returncode == 2, second.stderr
        assert f"worker local already runs for {tmp_path} (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        assert pid_file.read_text() == str(first.pid)  # the first one's file is untouched
        assert sh(env, "worker", "--stop").returncode == 0
        assert first.wait(timeout=60) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_stopping_with_a_pid_file_that_holds_no_pid_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "SHIPLINE_CONFIG": str(PROJECT), "SHIPLINE_HOME": str(tmp_path)}
    env.pop("SHIPLINE_DATABASE_URL", None)
    (tmp_path / "worker-local.pid").write_text("")
    stopped = sh(env, "worker", "--stop")
    assert stopped.returncode == 1
    assert "worker local: its pid file" in stopped.stderr and "holds no pid" in stopped.stderr
    assert "Traceback" not in stopped.stderr
