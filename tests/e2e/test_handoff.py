"""Starting, approving and cancelling runs from the CLI asks the engine through the state
store's outbox: the CLI never loads the durable engine, a run submitted while no worker runs
is queued by the first worker that starts, and an approval rings the worker, which acts on it
at once (the doorbell itself: tests/unit/test_doorbell.py)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.worker import running_worker, sh

PROJECT = Path(__file__).parent / "projects" / "memory" / "shipline.yaml"


def _env(tmp_path: Path) -> dict[str, str]:
    project = tmp_path / "shipline.yaml"
    shutil.copy(PROJECT, project)
    env = {**os.environ, "SHIPLINE_CONFIG": str(project), "SHIPLINE_HOME": str(tmp_path / "s"),
           "SHIPLINE_USER": "dev"}  # fmt: skip
    env.pop("SHIPLINE_DATABASE_URL", None)
    return env


def _outbox(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "s" / "state.db") as db:
        return [(k, w) for k, w in db.execute("SELECT kind, workflow_id FROM outbox ORDER BY id")]


def _phase_of_run_1(env: dict[str, str], *phases: str) -> dict[str, object]:
    """Run 1 as `runs show` gives it, once it is in one of `phases` (or after a minute)."""
    for _ in range(600):
        shown: dict[str, object] = json.loads(sh(env, "runs", "show", "1", "--json").stdout)
        if shown["phase"] in phases:
            break
        time.sleep(0.1)
    return shown


def test_the_cli_never_loads_the_durable_engine(tmp_path: Path) -> None:
    env = _env(tmp_path)
    probe = (
        "import sys\n"
        "from shipline.cli.app import main\n"
        "codes = [main(['deploy', '--env', 'qa', '--tag', '1.0.0', '--detach']),\n"
        "         main(['approve', '1', '--as', 'ann']),\n"
        "         main(['cancel', '1', '--reason', 'not today'])]\n"
        "assert codes[0] == 3, codes\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dbos',))\n"
        "print('LOADED', loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout, done.stdout
    # the run and its queueing were written together; the vote and the cancel wait as well
    assert _outbox(tmp_path)[0] == ("enqueue", "shipline-run-1")


def test_a_run_submitted_without_a_worker_starts_with_the_first_one(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert sh(env, "deploy", "--env", "dev", "--tag", "1.0.0", "--detach").returncode == 3
    assert _outbox(tmp_path) == [("enqueue", "shipline-run-1")]
    with running_worker(Path(env["SHIPLINE_CONFIG"]), tmp_path / "s", "dev", tmp_path / "w.log"):
        shown = _phase_of_run_1(env, "succeeded", "failed")
        assert shown["phase"] == "succeeded", shown
        assert _outbox(tmp_path) == []  # carried out, and gone


def test_an_approval_from_the_cli_reaches_the_parked_run(tmp_path: Path) -> None:
    env = _env(tmp_path)
    log = tmp_path / "w.log"
    with running_worker(Path(env["SHIPLINE_CONFIG"]), tmp_path / "s", "dev", log) as worker:
        assert sh(worker, "deploy", "--env", "qa", "--tag", "1.0.0", "--detach").returncode == 3
        shown = _phase_of_run_1(worker, "waiting")
        assert shown["phase"] == "waiting", shown
        voted = sh(worker, "approve", "1", "--as", "ann")
        assert voted.returncode == 0, voted.stderr
        shown = _phase_of_run_1(worker, "succeeded")
        assert shown["phase"] == "succeeded", shown
