"""Single sign-on against a local OpenID Connect issuer: the code flow with PKCE signs a person
in; a forged ID token, a state from another browser and a reused code are refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from ruamel.yaml import YAML

from shipline.engine.workspace import Workspace
from shipline.server.app import create_app
from tests.integration.server.conftest import PROJECT
from tests.servers.oidc import Issuer, oidc_issuer


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    with oidc_issuer() as running:
        yield running


@pytest.fixture
def client(issuer: Issuer, tmp_path: Path) -> Iterator[TestClient]:
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    yaml = YAML()
    data = yaml.load(project / "shipline.yaml")
    data["access"]["oidc"] = {"issuer": issuer.url, "clientId": issuer.client_id,
                              "clientSecret": "oidc-client-secret", "displayName": "Entra ID"}  # fmt: skip
    yaml.dump(data, project / "shipline.yaml")
    environ = {"SHIPLINE_HOME": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    ws = Workspace.open(project / "shipline.yaml", environ=environ)
    ws.store().set("oidc-client-secret", issuer.client_secret)
    with TestClient(create_app(ws), base_url="https://testserver") as test_client:
        yield test_client


def _sign_in(client: TestClient, *, start: TestClient | None = None) -> httpx.Response:
    """Begin at shipline, let the issuer answer, come back to the callback."""
    begun = (start or client).get("/auth/oidc/login?next=/runs", follow_redirects=False)
    assert begun.status_code == 303, begun.text
    at_issuer = httpx.get(begun.headers["location"], follow_redirects=False)
    assert at_issuer.status_code == 302
    callback = httpx.URL(at_issuer.headers["location"])
    assert callback.path == "/auth/oidc/callback"
    return client.get(f"{callback.path}?{callback.query.decode()}", follow_redirects=False)


def test_single_sign_on_signs_a_person_in(client: TestClient, issuer: Issuer) -> None:
    page = client.get("/login")
    assert "Entra ID" in page.text
    done = _sign_in(client)
    assert done.status_code == 303 and done.headers["location"] == "/runs"
    me = client.get("/api/v1/me").json()
    assert me["name"] == issuer.person and me["admin"] is False
    ws = client.app.state.server.ws  # type: ignore[attr-defined]
    assert any(
        r["action"] == "login.ok" and r["actor"] == issuer.person for r in ws.audit.records()
    )


def test_a_forged_id_token_is_refused(client: TestClient, issuer: Issuer) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    issuer.forge_with = rsa.generate_private_key(65537, 2048)
    done = _sign_in(client)
    assert done.status_code == 401 and "ID token is not valid" in done.text
    assert client.get("/api/v1/me").status_code == 401


def test_a_sign_in_begun_in_another_browser_is_refused(client: TestClient, issuer: Issuer) -> None:
    other = TestClient(client.app, base_url="https://testserver")
    done = _sign_in(client, start=other)  # the state cookie is in the other browser
    assert done.status_code == 401 and "not started here" in done.text
    assert client.get("/api/v1/me").status_code == 401
