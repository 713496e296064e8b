"""`shipline demo` on a copy of QuikApp's example, as a new user runs it: the whole ladder on
this machine (release 1.0.0 from local up to live, then a hotfix of three services with canaries
at staging and live), approved as the configured groups' members, then `demo --stop`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.worker import EXE, sh

ROOT = Path(__file__).resolve().parents[2]
LADDER = ["local", "dev", "qa", "uat1", "uat2", "uat3", "staging", "live"]


def _steps(data: dict[str, Any], stage: str) -> dict[str, dict[str, Any]]:
    (found,) = [s for s in data["stages"] if s["name"] == stage]
    return {step["name"]: step for step in found["steps"]}


def _alive(marker: str) -> list[str]:
    """The processes whose command line names `marker` (the demo's folder)."""
    done = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True, check=False)
    return [line for line in done.stdout.splitlines() if "pgrep" not in line]


def test_the_demo_promotes_quikapp_up_the_whole_ladder_then_stops(tmp_path: Path) -> None:
    project = tmp_path / "quikapp"
    shutil.copytree(ROOT / "examples" / "quikapp", project,
                    ignore=shutil.ignore_patterns(".shipline"))  # fmt: skip
    env = {**os.environ, "SHIPLINE_CONFIG": str(project / "shipline.yaml"),
           "SHIPLINE_USER": "me"}  # fmt: skip
    env.pop("SHIPLINE_HOME", None)
    env.pop("SHIPLINE_DATABASE_URL", None)
    folder = project / ".shipline" / "demo"
    # the demo's own configuration in use (as its closing lines suggest) acts on the demo too
    demo_env = {**env, "SHIPLINE_CONFIG": str(folder / "shipline.yaml")}
    try:
        done = sh(env, "demo", "--json", timeout=600)
        # on a failure: the runs (each with its phase and reason) lead the document
        assert done.returncode == 0, done.stdout[:6000] + done.stderr[-3000:]
        shown = json.loads(done.stdout)
        details = {r["run"]: json.loads(sh(demo_env, "runs", "show", str(r["run"]),
                                           "--json").stdout) for r in shown["runs"]}  # fmt: skip
        audit = json.loads(sh(demo_env, "audit", "list", "--limit", "5000", "--json").stdout)
    finally:
        stopped = sh(demo_env, "demo", "--stop", "--json")
    assert shown["config"] == str(folder / "shipline.yaml")
    assert any("type local" in line for line in shown["differs"])
    runs = shown["runs"]
    assert [(r["phase"], details[r["run"]]["pipeline"]) for r in runs] == [
        ("succeeded", "deploy"), ("succeeded", "promote"),
        ("succeeded", "deploy"), ("succeeded", "promote"),
    ]  # fmt: skip
    first, promoted, hotfix, climbed = (details[r["run"]] for r in runs)
    assert promoted["environments"] == LADDER[1:]
    # each rung's approvals, as the members of the groups it waits on (none are the requester)
    votes = {(v["stage"], v["user"]) for v in runs[1]["approvals"]}
    assert {("qa:deploy", "quinn"), ("uat1:deploy", "pat"), ("uat3:deploy", "pat"),
            ("uat3:deploy", "sam"), ("staging:deploy", "riley"), ("live:deploy", "casey"),
            ("live:deploy", "riley"), ("live:deploy", "taylor")} <= votes  # fmt: skip
    assert all(v["user"] != "demo" for r in runs for v in r["approvals"])
    # every vote the guide cast counted: none was tried twice, none refused
    actions = [r["action"] for r in audit]
    assert actions.count("approval.approve") == sum(len(r["approvals"]) for r in runs)
    assert "approval.not-counted" not in actions and "approval.refused" not in actions
    assert first["requestedBy"] == promoted["requestedBy"] == "demo"
    # QuikApp's reference gates ran on local
    assert {s["name"]: s["phase"] for s in _steps(first, "tests").values()} == {
        "smoke": "succeeded", "load": "succeeded", "security": "succeeded"}  # fmt: skip
    # the hotfix: three services, canaries at staging and live against 1.0.0, promoted
    hot = sorted(hotfix["services"])
    assert len(hot) == 3 and set(climbed["services"]) == set(hot)
    for rung in ("staging", "live"):
        for name, step in _steps(climbed, f"{rung}:deploy").items():
            assert step["note"].startswith("canary 1.1.0 promoted after "), (rung, name, step)
    # every service on every rung, healthy: the hotfix at 1.1.0, the rest at 1.0.0
    status = {(r["environment"], r["service"]): r for r in shown["status"]}
    assert {e for e, _ in status} == set(LADDER) and len(status) == 8 * 22
    for (environment, service), row in status.items():
        want = "1.1.0" if service in hot else "1.0.0"
        assert (row["version"], row["health"]) == (want, "healthy"), (environment, row)
    # stopped: every rung's services and the worker; nothing of the demo runs on
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["stopped"] == LADDER
    assert _alive(str(folder)) == []
    # the original project's own state holds none of the demo's runs
    assert json.loads(sh(env, "runs", "list", "--json").stdout) == []


def test_an_interrupted_demo_says_how_to_go_on_and_stop_cancels_what_it_left(
    tmp_path: Path,
) -> None:
    project = tmp_path / "quikapp"
    shutil.copytree(ROOT / "examples" / "quikapp", project,
                    ignore=shutil.ignore_patterns(".shipline"))  # fmt: skip
    env = {**os.environ, "SHIPLINE_CONFIG": str(project / "shipline.yaml")}
    env.pop("SHIPLINE_HOME", None)
    env.pop("SHIPLINE_DATABASE_URL", None)
    folder = project / ".shipline" / "demo"
    # Ctrl-C as in a terminal: a test runner started in the background (a CI job) ignores
    # SIGINT, and a child inherits that; the demo starts with the default disposition instead
    interactive = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL);"
                   " os.execv(sys.argv[1], sys.argv[1:])")  # fmt: skip
    demo = subprocess.Popen([sys.executable, "-c", interactive, EXE, "demo"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        assert demo.stdout is not None
        for line in demo.stdout:  # the promotion has started: Ctrl-C
            if line.startswith("== promote 1.0.0"):
                break
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
        stopped = sh(env, "demo", "--stop", "--json")
    assert demo.returncode == 130, err
    assert "interrupted: what the demo queued goes on in its worker" in err, err
    assert "shipline demo --stop" in err and "Traceback" not in err
    assert stopped.returncode == 0, stopped.stderr
    # what the interrupted demo left unfinished was cancelled by --stop
    demo_env = {**env, "SHIPLINE_CONFIG": str(folder / "shipline.yaml")}
    runs = json.loads(sh(demo_env, "runs", "list", "--json").stdout)
    phases = [(r["pipeline"], r["phase"]) for r in runs if r["pipeline"] != "down"]
    assert ("deploy", "succeeded") in phases and all(
        phase in ("succeeded", "cancelled") for _, phase in phases), phases  # fmt: skip
    assert _alive(str(folder)) == []
