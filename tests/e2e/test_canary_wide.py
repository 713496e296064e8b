"""Canaries side by side (`strategy.maxParallel`), through the CLI and real worker processes on
the `memory` target: each service's canary runs on its own, at the same time as the others;
kill -9 of the worker while they run loses neither; a person promotes or aborts one of them by
`--service`, or each one running without it; a cancellation restores every stable version."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.test_canary_runs import (
    _memory,
    _show,
    _start,
    _until_running,
    _wait,
    _worker,
    crash_seed,
    kill_while_running,
)
from tests.e2e.worker import running_worker, sh

PROJECT = Path(__file__).parent / "projects" / "canary-wide" / "shipline.yaml"


def _environ(home: Path) -> dict[str, str]:
    environ = {**os.environ, "SHIPLINE_CONFIG": str(PROJECT), "SHIPLINE_HOME": str(home),
               "SHIPLINE_USER": "ann"}  # fmt: skip
    environ.pop("SHIPLINE_DATABASE_URL", None)
    return environ


def _steps(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (deploy,) = [s for s in data["stages"] if s["name"] == "deploy"]
    return {step["name"]: step for step in deploy["steps"]}


def _progress(env: dict[str, str], run: int, service: str) -> list[int]:
    """The canary step numbers `service`'s canary recorded, in order."""
    logs = json.loads(sh(env, "runs", "logs", str(run), "--json").stdout)["logs"]
    return [int(m.group(1)) for line in logs
            if line["step"] == service and (m := re.match(r"step (\d+)/\d+:", line["line"]))]  # fmt: skip


def _until_paused(home: Path, env: str, version: str, services: tuple[str, ...]) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        found = _memory(home)["services"]
        canaries = [(found.get(f"{env}/{s}") or {}).get("canary") for s in services]
        if all(c and c["spec"]["version"] == version for c in canaries):
            return
        time.sleep(0.1)
    raise AssertionError(f"the canaries of {services} never started")


def _paused_in_qa(env: dict[str, str], home: Path) -> int:
    """qa at 1.0.0, then a run of 1.1.0 whose two canaries wait for a person, at 10 %."""
    assert _wait(env, _start(env, "--env", "qa", "--tag", "1.0.0"))["phase"] == "succeeded"
    run = _start(env, "--env", "qa", "--tag", "1.1.0")
    _until_paused(home, "qa", "1.1.0", ("api", "web"))
    return run


def test_the_canaries_of_a_stage_run_side_by_side_and_survive_kill_9(tmp_path: Path) -> None:
    home = tmp_path / "state"
    env = _environ(home)
    log = tmp_path / "worker.log"
    seed, rng = crash_seed()
    worker = _worker(env, log)
    try:
        _until_running(worker, log, 1)
        assert _wait(env, _start(env, "--env", "dev", "--tag", "1.0.0"))["phase"] == "succeeded"
        run = _start(env, "--env", "dev", "--tag", "2.0.0")
        worker, data = kill_while_running(env, log, (worker, 1), run, rng, (3, 0.3, 0.9))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert data["phase"] == "succeeded", f"seed {seed}: {data['reason']}"
    steps = _steps(data)
    for name in ("api", "web"):
        assert steps[name]["note"].startswith("canary 2.0.0 promoted after "), (seed, steps[name])
        service = _memory(home)["services"][f"dev/{name}"]
        assert (service["spec"]["version"], service["canary"]) == ("2.0.0", None), seed
        progress = _progress(env, run, name)
        assert progress == sorted(progress), f"seed {seed}: {name} went back: {progress}"
        assert all(progress.count(s) <= 2 for s in set(progress)), f"seed {seed}: {progress}"
    # side by side: each canary began before the other ended
    api, web = (
        {k: datetime.fromisoformat(steps[n][k]) for k in ("startedAt", "finishedAt")}
        for n in ("api", "web")
    )
    assert api["startedAt"] < web["finishedAt"] and web["startedAt"] < api["finishedAt"], seed


def test_a_person_decides_one_canary_of_several_or_each_one(tmp_path: Path) -> None:
    home = tmp_path / "state"
    with running_worker(PROJECT, home, "ann", tmp_path / "worker.log") as env:
        run = _paused_in_qa(env, home)
        lines = [e["line"] for e in json.loads(sh(env, "runs", "logs", str(run), "--json").stdout)
                 ["logs"] if e["step"] == "web"]  # fmt: skip
        # each paused canary says how to decide it, and only it
        assert (
            f"step 2/2: pause until promoted (shipline canary promote|abort {run} --service web)"
            in lines
        )
        unknown = sh(env, "canary", "promote", str(run), "--service", "db")
        assert unknown.returncode == 2 and "no canary of 'db' running now" in unknown.stderr
        assert "running now: api, web" in unknown.stderr
        promoted = sh(env, "canary", "promote", str(run), "--service", "api")
        assert promoted.returncode == 0, promoted.stderr
        assert "canary of api promoted" in promoted.stdout
        end = time.monotonic() + 60
        while _steps(_show(env, run))["api"]["phase"] != "succeeded":
            assert time.monotonic() < end, _show(env, run)
            time.sleep(0.1)
        time.sleep(0.5)  # web's canary waits on: the promote named api only
        assert _steps(_show(env, run))["web"]["phase"] == "running"
        assert _memory(home)["services"]["qa/web"]["canary"]["weight"] == 10
        aborted = sh(env, "canary", "abort", str(run))  # each one running: web's
        assert aborted.returncode == 0 and "canary of web aborted" in aborted.stdout
        data = _wait(env, run)
        records = json.loads(sh(env, "audit", "list", "--json").stdout)
    assert data["phase"] == "failed" and "web" in data["reason"], data["reason"]
    assert "aborted by a person" in _steps(data)["web"]["error"]
    web = _memory(home)["services"]["qa/web"]
    assert (web["spec"]["version"], web["canary"]) == ("1.0.0", None)
    decided = [(r["action"], r["details"]["step"]) for r in records
               if r["action"] in ("canary.promote", "canary.abort")]  # fmt: skip
    assert decided == [("canary.abort", "web"), ("canary.promote", "api")]  # newest first


def test_cancel_during_side_by_side_canaries_restores_each_stable(tmp_path: Path) -> None:
    home = tmp_path / "state"
    with running_worker(PROJECT, home, "ann", tmp_path / "worker.log") as env:
        run = _paused_in_qa(env, home)
        assert sh(env, "runs", "cancel", str(run), "--reason", "enough").returncode == 0
        data = _wait(env, run)
    assert data["phase"] == "cancelled", data["reason"]
    for name in ("api", "web"):
        service = _memory(home)["services"][f"qa/{name}"]
        assert (service["spec"]["version"], service["canary"]) == ("1.0.0", None), name
        assert _steps(data)[name]["phase"] == "cancelled", _steps(data)[name]


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[-2000:]
    return found.group(1)


def _signed_in(client: Any, person: str) -> str:
    """Sign `person` in on the web pages; the session's CSRF token."""
    done = client.post("/login", data={"name": person, "password": PASSWORD, "next": "/",
                                       "csrf": _csrf(client.get("/login").text)})  # fmt: skip
    assert done.status_code == 200, done.text[-2000:]
    return _csrf(client.get("/").text)


def _flash(page: str) -> str:
    found = re.search(r'class="flash (?:ok|error)"[^>]*>([^<]+)<', page)
    assert found, page[-3000:]
    return html.unescape(found.group(1))


PASSWORD = "correct horse battery staple"


def test_the_run_page_decides_each_running_canary(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from shipline.engine.assembly import accounts
    from shipline.engine.workspace import Workspace
    from shipline.server.app import create_app

    home = tmp_path / "state"
    with running_worker(PROJECT, home, "ann", tmp_path / "worker.log") as env:
        run = _paused_in_qa(env, home)
        ws = Workspace.open(PROJECT, environ=env)
        people = accounts(ws)
        people.add_user("ada", PASSWORD, admin=True, actor="test")  # may approve
        people.add_user("vic", PASSWORD, admin=False, actor="test")  # may view, not approve
        with TestClient(create_app(ws), base_url="https://testserver") as client:
            _signed_in(client, "vic")
            seen = client.get(f"/runs/{run}").text
            assert 'aria-label="canaries running"' in seen  # what runs, without buttons
            assert 'value="promote"' not in seen and 'value="abort"' not in seen
            refused = client.post(f"/runs/{run}/canary", data={
                "csrf": _csrf(client.get("/").text), "action": "promote", "service": "api"})  # fmt: skip
            assert _flash(refused.text) == "vic may not approve on qa"
            no_token = client.post(f"/runs/{run}/canary", data={
                "csrf": "forged", "action": "abort", "service": "api"})  # fmt: skip
            assert no_token.status_code == 403
            client.cookies.clear()

            csrf = _signed_in(client, "ada")
            page = client.get(f"/runs/{run}").text
            for name in ("api", "web"):  # one form per running canary, with both buttons
                form = re.search(rf'aria-label="decide the canary of {name}">(.*?)</form>', page,
                                 re.S)  # fmt: skip
                assert form and 'value="promote"' in form[1] and 'value="abort"' in form[1]
                assert f'name="service" value="{name}"' in form[1]
            done = client.post(f"/runs/{run}/canary",
                               data={"csrf": csrf, "action": "promote", "service": "api"})  # fmt: skip
            assert _flash(done.text) == "canary of api promoted by ada"
            end = time.monotonic() + 60
            while _steps(_show(env, run))["api"]["phase"] != "succeeded":
                assert time.monotonic() < end, _show(env, run)
                time.sleep(0.1)
            page = client.get(f"/runs/{run}").text
            assert 'aria-label="decide the canary of api"' not in page  # it ended
            assert 'aria-label="decide the canary of web"' in page  # still paused
            unknown = client.post(f"/runs/{run}/canary",
                                  data={"csrf": csrf, "action": "abort", "service": "api"})  # fmt: skip
            assert _flash(unknown.text) == f"run {run} has no canary of 'api' running now"
            aborted = client.post(f"/runs/{run}/canary",
                                  data={"csrf": csrf, "action": "abort", "service": "web"})  # fmt: skip
            assert _flash(aborted.text) == "canary of web aborted by ada"
            data = _wait(env, run)
            assert 'aria-label="canaries running"' not in client.get(f"/runs/{run}").text
        records = json.loads(sh(env, "audit", "list", "--json").stdout)
    assert data["phase"] == "failed" and "aborted by a person" in _steps(data)["web"]["error"]
    assert _steps(data)["api"]["phase"] == "succeeded"
    web = _memory(home)["services"]["qa/web"]
    assert (web["spec"]["version"], web["canary"]) == ("1.0.0", None)
    decided = [(r["action"], r["actor"], r["details"]["step"]) for r in records
               if r["action"] in ("canary.promote", "canary.abort")]  # fmt: skip
    assert decided == [("canary.abort", "ada", "web"), ("canary.promote", "ada", "api")]
