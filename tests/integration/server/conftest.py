"""A shipline server on a copy of the server test project: people in every role, each with a
personal token, and a client speaking HTTPS to the app in-process (its cookies are Secure)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shipline.engine.assembly import accounts
from shipline.engine.workspace import Workspace
from shipline.server.app import create_app

PROJECT = Path(__file__).parents[2] / "e2e" / "projects" / "server"
PASSWORD = "correct horse battery staple"
SLACK_SECRET = "slack-signing-0123456789"
GIT_SECRET = "git-hook-0123456789"
# role -> the person who has it (see the project's `access:`)
ROLES = {
    "admin": "ada",
    "deployer": "dev1",
    "approver": "quinn",
    "viewer": "vic",
    "cab": "casey",
    "nobody": "olly",
}


@dataclass
class Site:
    """The running app and everything a test needs around it."""

    client: TestClient
    ws: Workspace
    project: Path
    environ: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, person: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[person]}"}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    environ = {**os.environ, "SHIPLINE_HOME": str(tmp_path / "state"),
               "SHIPLINE_CONFIG": str(project / "shipline.yaml"), "SHIPLINE_USER": "tester"}  # fmt: skip
    environ.pop("SHIPLINE_DATABASE_URL", None)
    environ.pop("SHIPLINE_SECRET_KEY", None)
    ws = Workspace.open(project / "shipline.yaml", environ=environ)
    ws.store().set("slack-signing-secret", SLACK_SECRET)
    ws.store().set("git-webhook-secret", GIT_SECRET)
    people = accounts(ws)
    tokens = {}
    for role, person in ROLES.items():
        people.add_user(person, PASSWORD, admin=role == "admin", actor="test")
        tokens[person] = people.create_token(
            person, "test", ["view", "deploy", "approve", "admin"], 1, actor="test"
        )[1]
    app = create_app(Workspace.open(project / "shipline.yaml", environ=environ))
    with TestClient(app, base_url="https://testserver") as client:
        yield Site(client, ws, project, environ, tokens)
