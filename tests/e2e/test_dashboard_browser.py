"""The web dashboard in real Chromium, on the QuikApp reference configuration with `local` made
to need the QA lead's or the release manager's approval and to deploy by canary: the QA lead
signs in, sees the 22 services, starts a deploy, cannot approve it (the requester never may);
the release manager approves it in another browser; the requester's page follows the run live
to its end. Screenshots of the dashboard, a run page and
a canary's analysis are taken (SHIPLINE_SCREENSHOTS=DIR keeps them, as the README's)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import QUIKAPP
from tests.e2e.worker import EXE, running_worker, sh

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _project(folder: Path) -> Path:
    """QuikApp, with `local` behind the QA lead's or release manager's approval, by canary."""
    shutil.copytree(QUIKAPP.parent, folder, ignore=shutil.ignore_patterns(".shipline"))
    yaml = YAML()
    path = folder / "environments.yaml"
    data = yaml.load(path)
    local = next(e for e in data["environments"] if e["name"] == "local")
    local.pop("tests", None)
    local["approvals"] = {"groups": ["qa-lead", "release-manager"]}
    local["strategy"] = {"type": "canary", "steps": [20, 50, 100], "bakeSeconds": 1,
                         # the analysis's own probes at 20 % weight: a few requests a second
                         "analysis": {"maxErrorRate": 0.05, "failureLimit": 2,
                                      "intervalSeconds": 1, "minRequests": 3,
                                      "inconclusiveLimit": 5}}  # fmt: skip
    yaml.dump(data, path)
    return folder / "shipline.yaml"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    config = _project(tmp_path / "quikapp")
    with running_worker(config, tmp_path / "state", "operator", tmp_path / "worker.log") as env:
        assert sh(env, "secrets", "generate", "--env", "local").returncode == 0
        for person in ("riley", "quinn"):
            made = sh(env, "users", "add", person, input_text=PASSWORD + "\n")
            assert made.returncode == 0, made.stderr
        port = _free_port()
        with open(tmp_path / "server.log", "wb") as log:
            server = subprocess.Popen([EXE, "server", "--port", str(port)], env=env,
                                      stdout=log, stderr=log)  # fmt: skip
        try:
            end = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert server.poll() is None, (tmp_path / "server.log").read_text()
                    assert time.monotonic() < end, "the server did not start"
                    time.sleep(0.2)
            yield f"http://127.0.0.1:{port}", env
        finally:
            server.terminate()
            server.wait(timeout=30)


def _sign_in(page: object, url: str, person: str) -> None:
    page.goto(url + "/")  # type: ignore[attr-defined]
    page.fill("#name", person)  # type: ignore[attr-defined]
    page.fill("#password", PASSWORD)  # type: ignore[attr-defined]
    page.click("form.stack button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(url + "/")  # type: ignore[attr-defined]


def _deploy(page: object, services: str, tag: str) -> str:
    form = "form[action='/deploy']"  # the dashboard's promote form has fields of these names too
    page.select_option(f"{form} select[name=environment]", "local")  # type: ignore[attr-defined]
    page.fill(f"{form} input[name=services]", services)  # type: ignore[attr-defined]
    page.fill(f"{form} input[name=tag]", tag)  # type: ignore[attr-defined]
    page.click(f"{form} button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_selector("p.flash.ok")  # type: ignore[attr-defined]
    return str(page.url).rsplit("/", 1)[-1].split("?", 1)[0]  # type: ignore[attr-defined]


def _approve(page: object, url: str, run: str, comment: str) -> str:
    page.goto(f"{url}/runs/{run}")  # type: ignore[attr-defined]
    page.wait_for_selector("section.waiting button:has-text('Approve')")  # type: ignore[attr-defined]
    page.fill("section.waiting input[name=comment]", comment)  # type: ignore[attr-defined]
    page.click("section.waiting button:has-text('Approve')")  # type: ignore[attr-defined]
    return str(page.inner_text("p.flash"))  # type: ignore[attr-defined]


def _ended(page: object) -> str:
    """Wait for the run page to show the run's end (live); its phase."""
    page.wait_for_selector(  # type: ignore[attr-defined]
        "#run-phase.succeeded, #run-phase.failed, #run-phase.errored, #run-phase.cancelled"
    )
    return str(page.inner_text("#run-phase"))  # type: ignore[attr-defined]


def test_deploy_approve_and_follow_live_in_the_browser(
    site: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    url, _env = site
    shots = Path(os.environ.get("SHIPLINE_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        viewport = {"width": 1280, "height": 860}
        requester = browser.new_context(viewport=viewport).new_page()  # type: ignore[arg-type]
        approver = browser.new_context(viewport=viewport).new_page()  # type: ignore[arg-type]
        requester.set_default_timeout(90_000)
        approver.set_default_timeout(90_000)

        _sign_in(requester, url, "quinn")
        rows = requester.locator("table.grid tbody tr")
        assert rows.count() == 22
        assert "local" in requester.inner_text("table.grid thead")
        run = _deploy(requester, "all", "1.0.0")
        requester.wait_for_selector("section.waiting")  # arrives live, no reload
        flash = _approve(requester, url, run, "my own change")
        assert "request" in flash, flash  # the requester may not approve their own run
        assert "waiting" in requester.inner_text("#run-phase")

        _sign_in(approver, url, "riley")
        flash = _approve(approver, url, run, "release signed off")
        assert "approved by riley" in flash, flash

        # the requester's page follows the run to its end by itself
        assert "succeeded" in _ended(requester), requester.inner_text("main")
        assert "approved by riley" in requester.inner_text("main")
        took = requester.locator("ol.stages span.took")  # each stage that ran: how long
        assert took.count() >= 3, requester.inner_text("ol.stages")
        assert all(re.fullmatch(r"\d+ ms|\d+\.\d s|\d+m\d\ds", t) for t in took.all_inner_texts())
        requester.goto(url + "/")
        healthy = requester.locator("table.grid tbody td .health.healthy")
        assert healthy.count() == 22
        requester.screenshot(path=str(shots / "dashboard.png"))

        canary_run = _deploy(requester, "auth-service,backend-gateway,message-service", "1.1.0")
        _approve(approver, url, canary_run, "CAB-12")
        assert "succeeded" in _ended(requester), requester.inner_text("main")
        charts = requester.locator("figure.canary-chart")
        assert charts.count() == 3
        requester.screenshot(path=str(shots / "run.png"), full_page=True)
        requester.locator("div.charts").screenshot(path=str(shots / "canary.png"))
        browser.close()
    for name in ("dashboard.png", "run.png", "canary.png"):
        assert (shots / name).stat().st_size > 5_000
