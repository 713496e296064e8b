"""Approvals carry a verified identity: the requester cannot approve their own run through any
path (the CLI signed in with a token, the API, a web form, Slack), a forged Slack or git
signature is refused, a revoked token stops working at once — with a real worker and, for the
CLI, a real server process."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipline.engine.assembly import accounts
from tests.e2e.worker import EXE, running_worker, sh
from tests.integration.server.conftest import GIT_SECRET, PASSWORD, SLACK_SECRET, Site


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def worker(site: Site, tmp_path: Path) -> Iterator[dict[str, str]]:
    with running_worker(
        site.project / "shipline.yaml", Path(site.environ["SHIPLINE_HOME"]), "tester",
        tmp_path / "worker.log",
    ) as environ:  # fmt: skip
        yield environ


@pytest.fixture
def server_url(site: Site, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(
            [EXE, "server", "--port", str(port)], env=site.environ, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert process.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < end, "the server did not start"
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _waiting(site: Site, run: int) -> dict[str, Any]:
    end = time.monotonic() + 90
    while time.monotonic() < end:
        shown = site.client.get(f"/api/v1/runs/{run}", headers=site.auth("ada")).json()
        if shown["phase"] == "waiting":
            return dict(shown)
        assert shown["phase"] in ("pending", "running"), shown
        time.sleep(0.2)
    raise AssertionError(f"run {run} never waited")


def _finished(site: Site, run: int) -> dict[str, Any]:
    end = time.monotonic() + 90
    while time.monotonic() < end:
        shown = site.client.get(f"/api/v1/runs/{run}", headers=site.auth("ada")).json()
        if shown["phase"] in ("succeeded", "failed", "errored", "cancelled"):
            return dict(shown)
        time.sleep(0.2)
    raise AssertionError(f"run {run} never finished")


def _slack(site: Site, slack_user: str, run: int, *, secret: str = SLACK_SECRET,
           age: float = 0) -> Any:  # fmt: skip
    payload = {"type": "block_actions", "user": {"id": slack_user},
               "actions": [{"action_id": "shipline-approve", "value": f"{run}:"}]}  # fmt: skip
    from urllib.parse import urlencode

    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time() - age))
    mac = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=" + mac.hexdigest(),
               "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    return site.client.post("/hooks/slack", content=body, headers=headers)


def _web_login(site: Site, person: str) -> str:
    form = site.client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf, form.text
    done = site.client.post("/login", data={"name": person, "password": PASSWORD,
                                            "csrf": csrf.group(1), "next": "/"})  # fmt: skip
    assert done.status_code == 200 and "Environments" in done.text, done.text
    page = site.client.get("/")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def test_the_requester_cannot_approve_through_any_path(
    site: Site, worker: dict[str, str], server_url: str, tmp_path: Path
) -> None:
    accounts(site.ws).add_user("quentin", PASSWORD, admin=False, actor="test")
    started = site.client.post("/api/v1/runs", headers=site.auth("quinn"),
                               json={"environment": "qa", "services": "api", "tag": "2.0.0"})  # fmt: skip
    assert started.status_code == 202, started.text
    run = started.json()["id"]
    assert started.json()["requestedBy"] == "quinn"
    shown = _waiting(site, run)
    waiting_stage = next(s["name"] for s in shown["stages"] if s["phase"] == "waiting")

    # the API, with quinn's own token
    own = site.client.post(f"/api/v1/runs/{run}/approve", headers=site.auth("quinn"), json={})
    assert own.status_code == 403, own.text
    assert "request" in own.json()["error"]

    # the web form, signed in as quinn
    csrf = _web_login(site, "quinn")
    form = site.client.post(f"/runs/{run}/approve", data={"csrf": csrf, "stage": waiting_stage})
    assert form.status_code == 200
    flash = re.search(r'class="flash error"[^>]*>([^<]+)<', form.text)
    assert flash, form.text[-3000:]
    assert "request" in flash.group(1)

    # Slack, as the Slack user mapped to quinn
    slack = _slack(site, "U0QUINN", run)
    assert slack.status_code == 200 and slack.json()["text"].startswith("Not recorded"), slack.text

    # the CLI, signed in to the server as quinn: --as is refused, and so is the vote
    cli_env = {**site.environ, "SHIPLINE_LOGIN_FILE": str(tmp_path / "login.json")}
    login = sh(cli_env, "login", "--server", server_url, "--user", "quinn",
               input_text=PASSWORD + "\n")  # fmt: skip
    assert login.returncode == 0, login.stderr
    assert (tmp_path / "login.json").stat().st_mode & 0o777 == 0o600
    pretend = sh(cli_env, "approve", str(run), "--as", "quentin")
    assert pretend.returncode == 2 and "--as is not accepted" in pretend.stderr
    voted = sh(cli_env, "approve", str(run))
    assert voted.returncode == 2, voted.stdout + voted.stderr
    assert "request" in voted.stderr

    shown = site.client.get(f"/api/v1/runs/{run}", headers=site.auth("ada")).json()
    assert shown["phase"] == "waiting" and shown["votes"] == []
    refused = [r for r in site.ws.audit.records() if r["action"] == "approval.refused"]
    assert len(refused) >= 3  # API, web, Slack, CLI all audited as refused

    # another approver, through the CLI signed in as themself: the run goes on
    other_env = {**site.environ, "SHIPLINE_LOGIN_FILE": str(tmp_path / "quentin.json")}
    assert sh(other_env, "login", "--server", server_url, "--user", "quentin",
              input_text=PASSWORD + "\n").returncode == 0  # fmt: skip
    who = sh(other_env, "whoami", "--json")
    assert json.loads(who.stdout)["name"] == "quentin"
    approved = sh(other_env, "approve", str(run), "--comment", "looks good")
    assert approved.returncode == 0, approved.stderr
    assert _finished(site, run)["phase"] == "succeeded"
    votes = site.client.get(f"/api/v1/runs/{run}", headers=site.auth("ada")).json()["votes"]
    assert [(v["user"], v["approve"]) for v in votes] == [("quentin", True)]
    assert sh(other_env, "logout").returncode == 0
    assert not (tmp_path / "quentin.json").exists()


def test_a_revoked_token_stops_working_at_once(site: Site) -> None:
    made = site.client.post("/api/v1/tokens", headers=site.auth("vic"),
                            json={"label": "laptop", "scopes": ["view"], "days": 1})  # fmt: skip
    token = made.json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert site.client.get("/api/v1/me", headers=headers).status_code == 200
    revoked = site.client.delete(f"/api/v1/tokens/{made.json()['id']}", headers=site.auth("vic"))
    assert revoked.status_code == 200
    after = site.client.get("/api/v1/me", headers=headers)
    assert after.status_code == 401 and "revoked" in after.json()["error"]
    # someone else's token is not theirs to revoke
    other = site.client.post("/api/v1/tokens", headers=site.auth("dev1"),
                             json={"label": "x", "scopes": ["view"], "days": 1}).json()  # fmt: skip
    assert (
        site.client.delete(f"/api/v1/tokens/{other['id']}", headers=site.auth("vic")).status_code
        == 404
    )
    # a disabled person's tokens stop too
    assert (
        site.client.post("/api/v1/users/dev1/disable", headers=site.auth("ada")).status_code == 200
    )
    assert site.client.get("/api/v1/me", headers=site.auth("dev1")).status_code == 401
    actions = [r["action"] for r in site.ws.audit.records()]
    assert "token.revoke" in actions and "user.disable" in actions


def test_forged_hook_signatures_are_refused(site: Site) -> None:
    assert _slack(site, "U0QUINN", 1, secret="not-the-secret").status_code == 401
    assert _slack(site, "U0QUINN", 1, age=3600).status_code == 401  # a replayed request
    body = json.dumps({"ref": "refs/heads/develop", "after": "a" * 40}).encode()
    forged = "sha256=" + hmac.new(b"guess", body, hashlib.sha256).hexdigest()
    refused = site.client.post("/hooks/git", content=body,
                               headers={"X-Hub-Signature-256": forged, "X-GitHub-Event": "push"})  # fmt: skip
    assert refused.status_code == 401
    assert site.client.post("/hooks/git", content=body).status_code == 401  # unsigned
    runs_before = site.client.get("/api/v1/runs", headers=site.auth("ada")).json()
    assert runs_before == []
    good = "sha256=" + hmac.new(GIT_SECRET.encode(), body, hashlib.sha256).hexdigest()
    accepted = site.client.post("/hooks/git", content=body,
                                headers={"X-Hub-Signature-256": good, "X-GitHub-Event": "push"})  # fmt: skip
    assert accepted.status_code == 200, accepted.text
    started = [entry for entry in accepted.json()["runs"] if "run" in entry]
    assert [e["environment"] for e in started] == ["dev"]
    run = site.client.get(f"/api/v1/runs/{started[0]['run']}", headers=site.auth("ada")).json()
    assert run["requestedBy"] == "webhook:github"
    # an Azure DevOps service hook with the shared secret as basic-auth password
    azure = {"eventType": "git.push", "resource": {"refUpdates": [
        {"name": "refs/heads/feature/x", "newObjectId": "b" * 40}]}}  # fmt: skip
    import base64

    basic = base64.b64encode(f"shipline:{GIT_SECRET}".encode()).decode()
    done = site.client.post("/hooks/git", content=json.dumps(azure).encode(),
                            headers={"Authorization": f"Basic {basic}"})  # fmt: skip
    assert done.status_code == 200 and done.json()["runs"] == []
    wrong = base64.b64encode(b"shipline:nope").decode()
    assert site.client.post("/hooks/git", content=json.dumps(azure).encode(),
                            headers={"Authorization": f"Basic {wrong}"}).status_code == 401  # fmt: skip
    refusals = [r for r in site.ws.audit.records() if r["action"] == "hook.refused"]
    assert len(refusals) == 5


def test_sign_in_is_rate_limited_and_audited(site: Site) -> None:
    for _ in range(5):
        wrong = site.client.post(
            "/api/v1/login", json={"name": "vic", "password": "wrong-password"}
        )
        assert wrong.status_code == 401
    blocked = site.client.post("/api/v1/login", json={"name": "vic", "password": PASSWORD})
    assert blocked.status_code == 429
    other = site.client.post("/api/v1/login", json={"name": "casey", "password": PASSWORD})
    assert other.status_code == 201
    actions = [r["action"] for r in site.ws.audit.records()]
    assert actions.count("login.failed") == 5 and "login.throttled" in actions
    assert PASSWORD not in json.dumps(site.ws.audit.records())


def test_pages_carry_security_headers_and_secure_cookies(site: Site) -> None:
    page = site.client.get("/login")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    done = site.client.post("/login", data={"name": "vic", "password": PASSWORD,
                                            "csrf": csrf.group(1)}, follow_redirects=False)  # fmt: skip
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=lax" in cookie
    # a form without the session's CSRF token is refused
    forged = site.client.post("/runs/1/approve", data={"csrf": "forged"})
    assert forged.status_code == 403
    # a cookie-authenticated API write needs the CSRF header
    api = site.client.post("/api/v1/tokens", json={"label": "x", "scopes": ["view"], "days": 1})
    assert api.status_code == 403
    # a login form posted without its own CSRF cookie is refused
    site.client.cookies.clear()
    assert site.client.post("/login", data={"name": "vic", "password": PASSWORD,
                                            "csrf": "x"}).status_code == 403  # fmt: skip


def test_a_signed_in_cli_starts_runs_as_its_person_within_their_roles(
    site: Site, worker: dict[str, str], server_url: str, tmp_path: Path
) -> None:
    cli_env = {**site.environ, "SHIPLINE_LOGIN_FILE": str(tmp_path / "dev1.json"),
               "SHIPLINE_USER": "someone-else"}  # fmt: skip
    assert sh(cli_env, "login", "--server", server_url, "--user", "dev1",
              input_text=PASSWORD + "\n").returncode == 0  # fmt: skip
    started = sh(cli_env, "deploy", "--env", "qa", "--services", "api", "--tag", "3.0.0",
                 "--detach", "--json")  # fmt: skip
    assert started.returncode == 3, started.stderr
    run = json.loads(started.stdout)["run"]
    shown = site.client.get(f"/api/v1/runs/{run}", headers=site.auth("ada")).json()
    assert shown["requestedBy"] == "dev1"  # the verified person, not SHIPLINE_USER
    refused = sh(cli_env, "deploy", "--env", "live", "--services", "api", "--tag", "3.0.0")
    assert refused.returncode == 2 and "may not deploy on live" in refused.stderr
    promoted = sh(cli_env, "promote", "--from", "dev", "--to", "qa,live", "--tag", "3.0.0")
    assert promoted.returncode == 2 and "may not deploy on live" in promoted.stderr
    followed = sh(cli_env, "deploy", "--env", "dev", "--services", "web", "--tag", "3.0.1")
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert "succeeded" in followed.stdout
    assert json.loads(sh(cli_env, "whoami", "--json").stdout)["name"] == "dev1"
    # reads go through the server too: what the person may see
    shown_cli = json.loads(sh(cli_env, "runs", "show", str(run), "--json").stdout)
    assert shown_cli["requestedBy"] == "dev1" and shown_cli["environment"] == "qa"
    listed = json.loads(sh(cli_env, "runs", "list", "--json").stdout)
    assert run in [r["id"] for r in listed]
    assert sh(cli_env, "runs", "list", "--env", "live").returncode == 2  # not dev1's to see


def test_the_dashboard_promotes_within_the_persons_roles(
    site: Site, worker: dict[str, str]
) -> None:
    deployed = site.client.post("/api/v1/runs", headers=site.auth("dev1"),
                                json={"environment": "dev", "services": "all", "tag": "1.2.0"})  # fmt: skip
    assert deployed.status_code == 202, deployed.text
    assert _finished(site, deployed.json()["id"])["phase"] == "succeeded"

    _web_login(site, "vic")  # a viewer: no form to promote with
    assert 'aria-label="promote"' not in site.client.get("/").text
    site.client.cookies.clear()
    csrf = _web_login(site, "dev1")  # deploys to dev and qa: promotes from dev
    page = site.client.get("/").text
    form = re.search(r'<form method="post" action="/promote".*?</form>', page, re.S)
    assert form and "<option>dev</option>" in form[0] and "<option>qa</option>" not in form[0]

    def flash(reply: Any) -> str:
        found = re.search(r'class="flash (?:ok|error)"[^>]*>([^<]+)<', reply.text)
        assert found, reply.text[-3000:]
        return html.unescape(found[1])

    beyond = site.client.post("/promote", data={"csrf": csrf, "source": "dev",
                                                "targets": "qa,live", "tag": "1.2.0"})  # fmt: skip
    assert flash(beyond) == "dev1 may not deploy on live"
    untried = site.client.post("/promote", data={"csrf": csrf, "source": "dev",
                                                 "targets": "qa", "tag": "9.9.9"})  # fmt: skip
    assert "did not succeed in dev" in flash(untried)
    pointless = site.client.post("/promote", data={
        "csrf": csrf, "source": "dev", "targets": "qa", "tag": "1.2.0", "emergency": "on",
        "reason": "INC-1"})  # fmt: skip
    assert flash(pointless) == "--emergency: qa has no business hours to override"
    assert site.client.post("/promote", data={"csrf": "forged", "source": "dev",
                                              "targets": "qa", "tag": "1.2.0"}).status_code == 403  # fmt: skip
    done = site.client.post("/promote", data={"csrf": csrf, "source": "dev", "targets": "qa",
                                              "services": "api", "tag": "1.2.0"})  # fmt: skip
    queued = re.search(r"run (\d+) queued: promote dev -> qa", flash(done))
    assert queued, flash(done)
    shown = _waiting(site, int(queued[1]))  # qa's approval, as for any promotion
    assert (shown["pipeline"], shown["environments"], shown["services"], shown["requestedBy"]) == (
        "promote", ["qa"], {"api": "1.2.0"}, "dev1")  # fmt: skip
