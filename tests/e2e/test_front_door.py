"""`deploy --detach` with a worker running is handed to that worker (its front door): the
command loads neither the project nor the store, yet every submission rule holds as without a
worker — refusals with the same message and exit code, a changed configuration taken as it is
on disk, the same run recorded; `--set` and a folder without a worker submit by themselves."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.worker import EXE, running_worker, sh

PROJECT = Path(__file__).parent / "projects" / "memory" / "shipline.yaml"


def _imports(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """`shipline ARGS` run with Python's import log: (the result, the modules it imported)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", EXE, *args], env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    return done, done.stderr


def _loaded(imported: str, module: str) -> bool:
    """Whether Python's import log shows `module` imported."""
    return re.search(rf"\|\s+{re.escape(module)}$", imported, re.MULTILINE) is not None


def _door_open(env: dict[str, str]) -> None:
    """Until the worker holds its door (a detach answered without loading the store)."""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        done = sh(env, "runs", "list", "--json")
        if done.returncode == 0 and (Path(env["SHIPLINE_HOME"]) / "worker-local.pid").exists():
            return
        time.sleep(0.2)
    raise AssertionError("the worker never started")


def test_a_detached_deploy_is_handed_to_the_worker(tmp_path: Path) -> None:
    project = tmp_path / "project" / "shipline.yaml"
    project.parent.mkdir()
    shutil.copy(PROJECT, project)
    home = tmp_path / "state"
    with running_worker(project, home, "bob", tmp_path / "worker.log") as env:
        _door_open(env)
        done, imported = _imports(
            env, "deploy", "--env", "dev", "--services", "api", "--tag", "1.0.0", "--detach"
        )
        assert done.returncode == 3, done.stderr[-2000:]
        assert "run 1 queued" in done.stdout
        # the quick path: not even the command-line framework (nor a server's HTTP client)
        for heavy in ("sqlalchemy", "pydantic", "dbos", "shipline.engine.submit", "typer",
                      "urllib.request", "typing", "dataclasses"):  # fmt: skip
            assert not _loaded(imported, heavy), f"the command loaded {heavy}"

        # the same refusals as the command's own, through the worker
        refused, _ = _imports(env, "deploy", "--env", "dev", "--services", "nope", "--tag",
                              "1.0.1", "--detach")  # fmt: skip
        assert refused.returncode == 2
        assert "unknown service(s): nope" in refused.stderr
        assert "hint:" in refused.stderr and "Traceback" not in refused.stderr
        bad_tag = sh(env, "deploy", "--env", "dev", "--services", "api", "--tag", "-x", "--detach")
        assert bad_tag.returncode == 2 and "not a valid image tag" in bad_tag.stderr

        # the configuration as it is on disk now, not as the worker loaded it
        text = project.read_text().replace("ladder: [dev, qa, live]", "")
        text += "  - {name: perf, cluster: c, namespace: p, tier: nonprod, target: fake}\n"
        text += "ladder: [dev, qa, perf, live]\n"
        project.write_text(text)
        moved, imported = _imports(env, "deploy", "--env", "perf", "--services", "web", "--tag",
                                   "2.0.0", "--detach", "--json")  # fmt: skip
        assert moved.returncode == 3, moved.stderr[-2000:]
        assert '"run": 2' in moved.stdout and not _loaded(imported, "sqlalchemy")

        # run parameters: the command submits by itself (the worker may not see its stores)
        own, imported = _imports(env, "deploy", "--env", "dev", "--services", "web", "--tag",
                                 "3.0.0", "--set", "LEVEL=debug", "--detach")  # fmt: skip
        assert own.returncode == 3 and "run 3 queued" in own.stdout
        assert _loaded(imported, "sqlalchemy")

        end = time.monotonic() + 60
        while True:
            shown = sh(env, "runs", "list", "--json")
            runs = {r["id"]: r for r in json.loads(shown.stdout)}
            if all(runs[n]["phase"] == "succeeded" for n in (1, 3)):
                break
            assert time.monotonic() < end, runs
            time.sleep(0.2)
        assert {runs[n]["requestedBy"] for n in (1, 2, 3)} == {"bob"}
        # a deploy after the file changed says the worker still runs what it loaded
        warning = "changed since this worker started"
        assert warning not in sh(env, "runs", "logs", "1").stdout
        assert warning in sh(env, "runs", "logs", "3").stdout
        # accepted as the file says now (the worker executes with the configuration it started
        # with, and says so: a new environment is deployed to after a worker restart)
        assert (runs[2]["environment"], runs[2]["services"]) == ("perf", {"web": "2.0.0"})

    # no worker: the command does it all itself
    env = {**os.environ, "SHIPLINE_CONFIG": str(project), "SHIPLINE_HOME": str(home),
           "SHIPLINE_USER": "bob"}  # fmt: skip
    env.pop("SHIPLINE_DATABASE_URL", None)
    alone = sh(env, "deploy", "--env", "dev", "--services", "api", "--tag", "4.0.0", "--detach")
    assert alone.returncode == 3 and "run 4 queued" in alone.stdout


def test_a_followed_deploy_and_a_promotion_are_submitted_by_the_worker(tmp_path: Path) -> None:
    """Without --detach too: the worker submits (the command never loads the submitting code)
    and the command follows the run to its end; a promotion's refusals are the command's own."""
    home = tmp_path / "state"
    with running_worker(PROJECT, home, "ann", tmp_path / "worker.log") as env:
        _door_open(env)
        done, imported = _imports(
            env, "deploy", "--env", "dev", "--services", "api", "--tag", "1.0.0", "--json"
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout)["phase"] == "succeeded"
        assert not _loaded(imported, "shipline.engine.submit")
        # the result waited for and read through the door: the command loaded no store, nor
        # the command-line framework (the quick path)
        for heavy in ("sqlalchemy", "pydantic", "dbos", "typer"):
            assert not _loaded(imported, heavy), f"the command loaded {heavy}"
        shown = json.loads(sh(env, "runs", "show", "1", "--json").stdout)
        assert json.loads(done.stdout) == shown
        assert [s["phase"] for s in shown["stages"]][:2] == ["succeeded", "succeeded"]

        skipped, imported = _imports(env, "promote", "--from", "dev", "--to", "live",
                                     "--services", "api", "--tag", "1.0.0")  # fmt: skip
        assert skipped.returncode == 2, skipped.stderr[-2000:]
        assert "qa" in skipped.stderr and "Traceback" not in skipped.stderr
        assert not _loaded(imported, "shipline.engine.promotion")

        promoted, imported = _imports(env, "promote", "--from", "dev", "--to", "qa",
                                      "--services", "api", "--tag", "1.0.0", "--detach",
                                      "--json")  # fmt: skip
        assert promoted.returncode == 3, promoted.stderr[-2000:]
        run = json.loads(promoted.stdout)["run"]
        assert not _loaded(imported, "shipline.engine.promotion")
        assert not _loaded(imported, "sqlalchemy")  # detached: nothing but the door
        assert not _loaded(imported, "typer")
        shown = json.loads(sh(env, "runs", "show", str(run), "--json").stdout)
        assert shown["pipeline"] == "promote" and shown["requestedBy"] == "ann"
        # it waits for qa's approval, as a promotion the command submitted would
        end = time.monotonic() + 60
        while shown["phase"] != "waiting":
            assert time.monotonic() < end, shown
            time.sleep(0.2)
            shown = json.loads(sh(env, "runs", "show", str(run), "--json").stdout)

        # a followed run that ends badly: its line and exit code, read through the door too
        follower = subprocess.Popen(
            [sys.executable, "-X", "importtime", EXE, "-q", "deploy", "--env", "qa",
             "--services", "web", "--tag", "2.0.0"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        end = time.monotonic() + 60
        while True:
            runs = json.loads(sh(env, "runs", "list", "--json").stdout)
            mine = [r for r in runs if r["services"] == {"web": "2.0.0"}]
            if mine and mine[0]["phase"] == "waiting":
                break
            assert time.monotonic() < end, runs
            time.sleep(0.2)
        assert sh(env, "runs", "cancel", str(mine[0]["id"])).returncode == 0
        out, err = follower.communicate(timeout=60)
        assert follower.returncode == 1, err[-2000:]
        assert out.startswith(f"run {mine[0]['id']} deploy: cancelled"), out
        assert not _loaded(err, "sqlalchemy") and not _loaded(err, "typer")


def test_votes_and_cancellations_are_counted_at_the_door(tmp_path: Path) -> None:
    """`approve`, `reject` and `runs cancel` with a worker running: the worker's run service
    decides (the command loads neither the store nor the engine), with the same refusals, and
    the run acts on the vote as it would on one the command recorded itself."""
    home = tmp_path / "state"
    with running_worker(PROJECT, home, "bob", tmp_path / "worker.log") as env:
        _door_open(env)
        for tag in ("1.0.0", "1.0.1", "1.0.2"):
            queued = sh(env, "deploy", "--env", "qa", "--services", "api", "--tag", tag,
                         "--detach")  # fmt: skip
            assert queued.returncode == 3, queued.stderr[-2000:]
        end = time.monotonic() + 60
        while {r["phase"] for r in json.loads(sh(env, "runs", "list", "--json").stdout)} != {
            "waiting"
        }:
            assert time.monotonic() < end
            time.sleep(0.2)

        refused, imported = _imports(env, "approve", "1", "--as", "bob")
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert "bob" in refused.stderr and not _loaded(imported, "sqlalchemy")
        voted, imported = _imports(env, "approve", "1", "--as", "ann", "--comment", "CAB-7")
        assert voted.returncode == 0, voted.stderr[-2000:]
        assert "run 1 stage 'deploy': approved by ann" in voted.stderr
        for heavy in ("sqlalchemy", "pydantic", "dbos", "shipline.engine.runs", "typer"):
            assert not _loaded(imported, heavy), f"the command loaded {heavy}"
        rejected, _ = _imports(env, "reject", "2", "--as", "ann")
        assert rejected.returncode == 0 and "rejected by ann" in rejected.stderr
        cancelled, imported = _imports(env, "runs", "cancel", "3", "--reason", "wrong tag")
        assert cancelled.returncode == 0 and not _loaded(imported, "sqlalchemy")
        assert "run 3: cancellation requested" in cancelled.stderr
        assert not _loaded(imported, "typer")  # the quick path, as approve's

        end = time.monotonic() + 60
        while True:
            runs = {r["id"]: r for r in json.loads(sh(env, "runs", "list", "--json").stdout)}
            if all(runs[n]["phase"] in ("succeeded", "failed", "cancelled") for n in (1, 2, 3)):
                break
            assert time.monotonic() < end, runs
            time.sleep(0.2)
        assert [runs[n]["phase"] for n in (1, 2, 3)] == ["succeeded", "failed", "cancelled"]
        shown = json.loads(sh(env, "runs", "show", "1", "--json").stdout)
        assert [(v["user"], v["comment"]) for v in shown["votes"]] == [("ann", "CAB-7")]
