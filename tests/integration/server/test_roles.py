"""Every API endpoint by every role: allowed, or 403, never a 500; without credentials, 401.
A new endpoint without a row here fails the test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.server.conftest import PASSWORD, ROLES, Site

EVERYONE = {"ada", "dev1", "quinn", "vic", "casey", "olly"}
VIEWERS = EVERYONE - {"olly"}
Call = Callable[[Site, dict[str, str], dict[str, Any]], httpx.Response]


def _get(path: str) -> Call:
    return lambda site, headers, ids: site.client.get(path.format(**ids), headers=headers)


def _post(path: str, body: dict[str, Any] | None = None) -> Call:
    return lambda site, headers, ids: site.client.post(
        path.format(**ids), headers=headers, json=body if body is not None else {}
    )


def _delete(path: str) -> Call:
    return lambda site, headers, ids: site.client.delete(path.format(**ids), headers=headers)


def _stream(path: str) -> Call:
    def call(site: Site, headers: dict[str, str], ids: dict[str, Any]) -> httpx.Response:
        with site.client.stream("GET", path.format(**ids), headers=headers) as response:
            return response  # the status is known; the stream is closed here

    return call


# (method, route) -> (who may, how to call it). Runs: {dev} is a dev run, {qa} a qa run.
MATRIX: dict[tuple[str, str], tuple[set[str], Call]] = {
    ("GET", "/api/v1/me"): (EVERYONE, _get("/api/v1/me")),
    ("GET", "/api/v1/status"): (VIEWERS, _get("/api/v1/status")),
    ("GET", "/api/v1/runs"): (VIEWERS, _get("/api/v1/runs")),
    ("POST", "/api/v1/runs"): (
        {"ada", "dev1", "quinn"},
        _post("/api/v1/runs", {"environment": "dev", "services": "api", "tag": "1.0.0"}),
    ),
    ("POST", "/api/v1/promotions"): (
        {"ada", "dev1", "quinn"},
        _post("/api/v1/promotions", {"source": "dev", "targets": "qa", "tag": "1.0.0"}),
    ),
    ("POST", "/api/v1/promotions/preview"): (  # the rules of the promotion itself
        {"ada", "dev1", "quinn"},
        _post("/api/v1/promotions/preview", {"source": "dev", "targets": "qa", "tag": "1.0.0"}),
    ),
    ("GET", "/api/v1/runs/{run_id}"): (VIEWERS, _get("/api/v1/runs/{dev}")),
    ("GET", "/api/v1/runs/{run_id}/logs"): (VIEWERS, _get("/api/v1/runs/{dev}/logs")),
    ("GET", "/api/v1/runs/{run_id}/logs/stream"): (
        VIEWERS,
        _stream("/api/v1/runs/{dev}/logs/stream"),
    ),
    ("POST", "/api/v1/runs/{run_id}/cancel"): (
        {"ada", "dev1", "quinn"},
        _post("/api/v1/runs/{qa}/cancel"),
    ),
    ("POST", "/api/v1/runs/{run_id}/approve"): (
        {"ada", "quinn"},
        _post("/api/v1/runs/{qa}/approve"),
    ),
    ("POST", "/api/v1/runs/{run_id}/reject"): ({"ada", "quinn"}, _post("/api/v1/runs/{qa}/reject")),
    ("POST", "/api/v1/runs/{run_id}/canary"): (
        {"ada", "quinn"},
        _post("/api/v1/runs/{qa}/canary", {"action": "promote"}),
    ),
    ("GET", "/api/v1/releases"): (VIEWERS, _get("/api/v1/releases")),
    ("GET", "/api/v1/releases/{name}"): (VIEWERS, _get("/api/v1/releases/r1")),
    ("GET", "/api/v1/history"): (
        {"ada", "dev1", "quinn", "vic", "casey"},
        _get("/api/v1/history?env=dev&service=api"),
    ),
    ("GET", "/api/v1/audit"): (VIEWERS, _get("/api/v1/audit")),
    ("GET", "/api/v1/events"): (VIEWERS, _stream("/api/v1/events")),
    ("GET", "/api/v1/tokens"): (VIEWERS, _get("/api/v1/tokens")),
    ("POST", "/api/v1/tokens"): (
        VIEWERS,
        _post("/api/v1/tokens", {"label": "x", "scopes": ["view"], "days": 1}),
    ),
    ("DELETE", "/api/v1/tokens/{token_id}"): (VIEWERS, _delete("/api/v1/tokens/9999")),
    ("GET", "/api/v1/users"): ({"ada"}, _get("/api/v1/users")),
    ("POST", "/api/v1/users"): (
        {"ada"},
        _post("/api/v1/users", {"name": "newbie", "password": PASSWORD}),
    ),
    ("POST", "/api/v1/users/{name}/disable"): ({"ada"}, _post("/api/v1/users/nobody-here/disable")),
}
PUBLIC = {("POST", "/api/v1/login")}  # it is how credentials are obtained


@pytest.fixture
def runs(site: Site) -> dict[str, Any]:
    made = {}
    for env in ("dev", "qa"):
        answer = site.client.post(
            "/api/v1/runs", headers=site.auth("ada"),
            json={"environment": env, "services": "api", "tag": "1.0.0"},
        )  # fmt: skip
        assert answer.status_code == 202, answer.text
        made[env] = answer.json()["id"]
    return made


def test_the_matrix_names_every_api_endpoint(site: Site) -> None:
    document = site.client.get("/api/openapi.json").json()
    routes = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if path.startswith("/api/")
        for method in operations
    }
    assert routes - PUBLIC == set(MATRIX), "every API endpoint needs a row in MATRIX"


@pytest.mark.parametrize("endpoint", sorted(MATRIX), ids=lambda e: f"{e[0]} {e[1]}")
def test_every_role(site: Site, runs: dict[str, Any], endpoint: tuple[str, str]) -> None:
    allowed, call = MATRIX[endpoint]
    anonymous = call(site, {}, runs)
    assert anonymous.status_code == 401, anonymous.text
    for person in ROLES.values():
        answer = call(site, site.auth(person), runs)
        assert answer.status_code < 500, (person, answer.status_code, answer.text)
        if person in allowed:
            assert answer.status_code not in (401, 403), (person, answer.text)
        else:
            assert answer.status_code == 403, (person, answer.status_code, answer.text)


def test_a_token_scoped_to_view_cannot_act_whoever_made_it(
    site: Site, runs: dict[str, Any]
) -> None:
    made = site.client.post(
        "/api/v1/tokens", headers=site.auth("ada"),
        json={"label": "read-only", "scopes": ["view"], "days": 1},
    )  # fmt: skip
    assert made.status_code == 201
    reader = {"Authorization": f"Bearer {made.json()['token']}"}
    assert site.client.get("/api/v1/runs", headers=reader).status_code == 200
    start = site.client.post("/api/v1/runs", headers=reader,
                             json={"environment": "dev", "services": "api", "tag": "1.0.1"})  # fmt: skip
    assert start.status_code == 403
    assert "scopes" in start.json()["error"]
    assert site.client.get("/api/v1/users", headers=reader).status_code == 403
    wider = site.client.post("/api/v1/tokens", headers=reader,
                             json={"label": "escalate", "scopes": ["admin"], "days": 1})  # fmt: skip
    assert wider.status_code == 400


def test_responses_pass_the_masker(site: Site, runs: dict[str, Any]) -> None:
    answer = site.client.get("/api/v1/audit", headers=site.auth("ada"))
    assert answer.status_code == 200
    everything = answer.text + site.client.get("/api/v1/runs", headers=site.auth("ada")).text
    from tests.integration.server.conftest import GIT_SECRET, SLACK_SECRET

    assert SLACK_SECRET not in everything and GIT_SECRET not in everything
    # a value the store holds is masked wherever it would appear
    assert site.ws.masker.mask(f"x {SLACK_SECRET} y") != f"x {SLACK_SECRET} y"


def test_the_audit_filters_read_times_and_refuse_what_is_not_one(
    site: Site, runs: dict[str, Any]
) -> None:
    everything = site.client.get("/api/v1/audit", headers=site.auth("ada")).json()
    assert everything
    recent = site.client.get("/api/v1/audit?since=1h", headers=site.auth("ada"))
    assert recent.status_code == 200 and recent.json() == everything
    assert site.client.get("/api/v1/audit?until=1h", headers=site.auth("ada")).json() == []
    wrong = site.client.get("/api/v1/audit?since=yesterday", headers=site.auth("ada"))
    assert wrong.status_code == 400 and "'yesterday' is not a time" in wrong.json()["error"]
    page = site.client.get("/audit?since=yesterday", headers=site.auth("ada"))
    assert page.status_code == 400 and "Traceback" not in page.text
    # the page reads each record's details as the CLI's table does, not as a mapping's repr
    page = site.client.get("/audit", headers=site.auth("ada"))
    newest = everything[0]
    assert f"run: {newest['details']['run']}" in page.text, newest
    assert "&#39;run&#39;" not in page.text and "None" not in page.text


def test_a_promotions_preview_is_refused_as_the_promotion_and_queues_nothing(
    site: Site, runs: dict[str, Any]
) -> None:
    before = site.client.get("/api/v1/runs", headers=site.auth("ada")).json()
    body = {"source": "dev", "targets": "qa", "tag": "1.0.0"}
    for path in ("/api/v1/promotions/preview", "/api/v1/promotions"):
        refused = site.client.post(path, headers=site.auth("ada"), json=body)
        # the dev run was queued, never run: 1.0.0 did not succeed there
        assert refused.status_code == 400, refused.text
        assert "did not succeed in dev" in refused.json()["error"]
    skipped = site.client.post("/api/v1/promotions/preview", headers=site.auth("ada"),
                               json={**body, "targets": "live"})  # fmt: skip
    assert skipped.status_code == 400 and "would skip qa" in skipped.json()["error"]
    assert site.client.get("/api/v1/runs", headers=site.auth("ada")).json() == before


def test_lists_by_environment_read_an_alias_and_refuse_a_typo(
    site: Site, runs: dict[str, Any]
) -> None:
    ada = site.auth("ada")
    for path in ("/api/v1/runs", "/api/v1/audit"):
        by_name = site.client.get(f"{path}?env=qa", headers=ada).json()
        assert by_name, path  # the qa run, and the record of its start
        # runs and records keep the name: `test`, qa's alias, lists what `qa` does
        assert site.client.get(f"{path}?env=test", headers=ada).json() == by_name, path
        typo = site.client.get(f"{path}?env=qaa", headers=ada)
        assert typo.status_code == 404, (path, typo.text)
        assert "unknown environment 'qaa'" in typo.json()["error"]
    page = site.client.get("/runs?env=test", headers=ada)
    assert page.status_code == 200 and f'href="/runs/{runs["qa"]}"' in page.text
    assert f'href="/runs/{runs["dev"]}"' not in page.text
    page = site.client.get("/audit?env=test", headers=ada)
    assert page.status_code == 200 and f"run: {runs['qa']}" in page.text
    for path in ("/runs?env=qaa", "/audit?env=qaa"):
        typo = site.client.get(path, headers=ada)
        assert typo.status_code == 404 and "unknown environment" in typo.text, path
        assert "Traceback" not in typo.text
