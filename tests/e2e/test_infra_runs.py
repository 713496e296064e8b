"""Infrastructure runs through the CLI and a real worker, on a root module that uses only what
Terraform ships: plan → approve that plan → apply, with the local backend and with the pg backend
(the test PostgreSQL); an approved plan made stale is refused; outputs recorded and taken by a
variable of a later deploy; destroy's guards; a promotion that stops at the first failing
environment; a secret passed to Terraform found nowhere but Terraform's own state."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.worker import running_worker, sh

PROJECT = Path(__file__).parent / "projects" / "infra"
SECRET = "tf-" + uuid.uuid4().hex  # the database password handed to Terraform
PG_ENV = "SHIPLINE_TEST_DATABASE_URL"

needs_terraform = pytest.mark.skipif(
    shutil.which("terraform") is None,
    reason="terraform is not installed (expected at /usr/local/bin/terraform)",
)


def _project(tmp_path: Path, *, pg: str | None = None, tool: str | None = None) -> Path:
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    config = project / "shipline.yaml"
    text = config.read_text().replace(
        "      nodeCount:", f"      testMarker: {uuid.uuid4().hex}\n      nodeCount:"
    )
    if pg:
        main = project / "terraform" / "main.tf"
        main.write_text(main.read_text().replace('backend "local" {}', 'backend "pg" {}'))
        text = text.replace(
            "      variableGroups: [tf-common]",
            f"      variableGroups: [tf-common]\n      backend: {{type: pg, env: {{PG_CONN_STR: '{pg}'}}}}",
        )
    if tool:
        text = text.replace("infrastructure:\n", f"infrastructure:\n  tool: {tool}\n")
    config.write_text(text)
    return config


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with running_worker(_project(tmp_path), tmp_path / "state", "ops", tmp_path / "w.log") as e:
        done = sh(e, "secrets", "set", "TF-DB-PASSWORD", input_text=SECRET)
        assert done.returncode == 0, done.stderr
        try:
            yield e
        finally:
            sh(e, "down", "--env", "dev")


def _json(env: dict[str, str], *args: str) -> tuple[int, Any]:
    done = sh(env, *args, "--json", timeout=300)
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout)


def _waiting(env: dict[str, str], *args: str) -> int:
    code, data = _json(env, *args, "--detach")
    assert code == 3, data
    run = int(data["run"])
    end = time.monotonic() + 120
    while _json(env, "runs", "show", str(run))[1]["phase"] != "waiting":
        assert time.monotonic() < end, f"run {run} never waited for its approvers"
        time.sleep(0.3)
    return run


def _finished(env: dict[str, str], run: int) -> dict[str, Any]:
    end = time.monotonic() + 180
    while time.monotonic() < end:
        shown = _json(env, "runs", "show", str(run))[1]
        if shown["phase"] not in ("pending", "queued", "running", "waiting"):
            return dict(shown)
        time.sleep(0.3)
    raise AssertionError(f"run {run} did not finish")


def _outputs(env: dict[str, str], name: str) -> dict[str, Any]:
    rows = _json(env, "infra", "outputs", "--env", name)[1]
    return {r["name"]: r["value"] for r in rows}


def _stage(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in data["stages"] if s["name"] == name)


def _process_env(marker: str) -> dict[str, str]:
    """The environment of the deployed replica that carries `marker`."""
    for proc in Path("/proc").iterdir():
        try:
            raw = (proc / "environ").read_bytes()
        except OSError:
            continue
        if f"TEST_MARKER={marker}".encode() in raw:
            pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
            return {k.decode(): v.decode(errors="replace") for k, _, v in pairs}
    raise AssertionError("no deployed replica carries the marker")


@needs_terraform
def test_plan_approve_apply_outputs_into_a_deploy_and_the_secret_stays_in_terraform(
    env: dict[str, str], tmp_path: Path
) -> None:
    # dev applies without approval (autoApprove); its outputs are recorded.
    code, data = _json(env, "infra", "apply", "--env", "dev", "--auto-approve")
    assert code == 0, data["reason"]
    plan = _stage(data, "dev:plan")["outputs"]["plan.platform"]
    assert plan["add"] == ["terraform_data.cluster", "terraform_data.database",
                           "terraform_data.nodes"]  # fmt: skip
    assert _outputs(env, "dev") == {"aks_cluster": "aks-quikapp-dev", "db_password": None,
                                    "node_count": 1}  # fmt: skip

    # The app's dev variables take the outputs; a later deploy runs with them.
    rows = _json(env, "vars", "show", "--env", "dev", "--service", "api")[1]
    shown = {r["name"]: r for r in rows}
    assert shown["aksCluster"]["value"] == "aks-quikapp-dev"
    assert shown["aksCluster"]["source"].startswith("output platform.aks_cluster of dev (run ")
    code, data = _json(env, "deploy", "--env", "dev", "--tag", "1.0.0")
    assert code == 0, data["reason"]
    marker = shown["testMarker"]["value"]
    replica = _process_env(marker)
    assert (replica["AKS_CLUSTER"], replica["NODE_COUNT"]) == ("aks-quikapp-dev", "1")

    # --auto-approve is refused where the configuration does not allow it.
    refused = sh(env, "infra", "apply", "--env", "staging", "--auto-approve")
    assert refused.returncode == 2 and "not allowed for staging" in refused.stderr

    # staging: the run waits with its plan; the platform team approves that plan; applied.
    run = _waiting(env, "infra", "apply", "--env", "staging")
    human = sh(env, "runs", "show", str(run)).stdout
    assert "staging:plan plan of platform: Plan: 3 to add, 0 to change, 0 to destroy" in human
    assert "+ terraform_data.cluster" in human
    assert sh(env, "approve", str(run), "--as", "pia").returncode == 0
    done = _finished(env, run)
    assert done["phase"] == "succeeded", done["reason"]
    assert _outputs(env, "staging")["node_count"] == 2

    # A plan approved after the configuration changed is refused, never re-planned.
    run = _waiting(env, "infra", "apply", "--env", "staging")
    tfvars = Path(env["SHIPLINE_CONFIG"]).parent / "terraform" / "environments" / "staging.tfvars"
    tfvars.write_text(tfvars.read_text().replace("node_count  = 2", "node_count  = 4"))
    assert sh(env, "approve", str(run), "--as", "pia").returncode == 0
    done = _finished(env, run)
    assert done["phase"] == "failed" and "is stale" in done["reason"], done["reason"]
    assert _outputs(env, "staging")["node_count"] == 2  # nothing applied

    # The secret is nowhere under the state folder but in Terraform's own state files.
    state = Path(env["SHIPLINE_HOME"])
    leaks = [
        str(p.relative_to(state)) for p in state.rglob("*")
        if p.is_file() and SECRET.encode() in p.read_bytes() and p.name != "terraform.tfstate"
    ]  # fmt: skip
    assert leaks == []
    assert any(SECRET.encode() in p.read_bytes() for p in state.rglob("terraform.tfstate"))
    for args in (("runs", "logs", "1"), ("runs", "show", "1"), ("audit", "list", "--limit", "100000"),
                 ("infra", "outputs")):  # fmt: skip
        out = sh(env, *args, "--json")
        assert SECRET not in out.stdout + out.stderr, args


@needs_terraform
def test_destroy_needs_its_confirmation_its_approvers_and_an_unprotected_environment(
    env: dict[str, str],
) -> None:
    for name in ("dev", "qa"):
        code, data = _json(env, "infra", "apply", "--env", name, "--auto-approve")
        assert code == 0, data["reason"]
    for args, said in (
        (("--env", "dev"), "needs --destroy-confirm dev"),
        (("--env", "dev", "--destroy-confirm", "qa"), "does not name the environment dev"),
        (("--env", "prod", "--destroy-confirm", "prod"), "prod is protected"),
        (("--env", "dev", "--destroy-confirm", "dev", "--auto-approve"), "No such option"),
    ):
        refused = sh(env, "infra", "destroy", *args)
        assert refused.returncode == 2 and said in refused.stderr, (args, refused.stderr)
    assert _outputs(env, "dev")["aks_cluster"] == "aks-quikapp-dev"  # nothing destroyed

    # staging's destroy waits for its approvers: a stranger's vote does not count; a rejection
    # leaves everything standing.
    run = _waiting(env, "infra", "apply", "--env", "staging")
    assert sh(env, "approve", str(run), "--as", "pia").returncode == 0
    assert _finished(env, run)["phase"] == "succeeded"
    run = _waiting(env, "infra", "destroy", "--env", "staging", "--destroy-confirm", "staging")
    human = sh(env, "runs", "show", str(run)).stdout
    assert "destroy plan of platform: Plan: 0 to add, 0 to change, 3 to destroy" in human
    stranger = sh(env, "approve", str(run), "--as", "sam")
    assert stranger.returncode == 2, stranger.stdout + stranger.stderr
    assert sh(env, "reject", str(run), "--as", "pia", "--comment", "not today").returncode == 0
    assert _finished(env, run)["phase"] == "failed"
    assert _outputs(env, "staging")["aks_cluster"] == "aks-quikapp-staging"

    # With the confirmation and the approvers: destroyed, and the outputs go with it.
    run = _waiting(env, "infra", "destroy", "--env", "staging", "--destroy-confirm", "staging")
    assert sh(env, "approve", str(run), "--as", "pia").returncode == 0
    assert _finished(env, run)["phase"] == "succeeded"
    assert _outputs(env, "staging") == {}
    code, data = _json(env, "infra", "destroy", "--env", "dev", "--destroy-confirm", "dev")
    assert code == 0, data["reason"]
    assert _outputs(env, "dev") == {}
    assert _outputs(env, "qa")["aks_cluster"] == "aks-quikapp-qa"


@needs_terraform
def test_a_promotion_stops_at_the_first_failing_environment(env: dict[str, str]) -> None:
    tfvars = Path(env["SHIPLINE_CONFIG"]).parent / "terraform" / "environments" / "qa.tfvars"
    tfvars.write_text(tfvars.read_text() + "fail = true\n")
    code, data = _json(env, "infra", "promote", "--start", "dev", "--stop", "prod")
    assert code == 1, data
    phases = {s["name"]: s["phase"] for s in data["stages"]}
    assert (phases["dev:plan"], phases["dev:apply"], phases["qa:plan"]) == (
        "succeeded", "succeeded", "failed")  # fmt: skip
    assert {phases[f"{e}:{s}"] for e in ("staging", "prod") for s in ("plan", "apply")} == {
        "skipped"
    }
    assert "configured to fail its plan" in _stage(data, "qa:plan")["steps"][0]["error"]
    assert _outputs(env, "qa") == {} and _outputs(env, "dev")["node_count"] == 1

    # Mended, the climb goes through staging's approval.
    tfvars.write_text(tfvars.read_text().replace("fail = true\n", ""))
    run = _waiting(env, "infra", "promote", "--start", "dev", "--stop", "staging")
    assert sh(env, "approve", str(run), "--as", "pia").returncode == 0
    done = _finished(env, run)
    assert done["phase"] == "succeeded", done["reason"]
    assert [_outputs(env, e)["aks_cluster"] for e in ("dev", "qa", "staging")] == [
        "aks-quikapp-dev", "aks-quikapp-qa", "aks-quikapp-staging"]  # fmt: skip


@needs_terraform
@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} is not set (PostgreSQL)")
def test_the_pg_backend_keeps_the_state_in_postgresql(tmp_path: Path) -> None:
    import psycopg

    url = os.environ[PG_ENV].replace("postgresql+psycopg://", "postgres://") + "?sslmode=disable"
    schema = f"terraform_platform_dev_{uuid.uuid4().hex[:8]}"
    config = _project(tmp_path, pg=url)
    config.write_text(config.read_text().replace(
        "backend: {type: pg, env:", f"backend: {{type: pg, config: {{schema_name: {schema}}}, env:"
    ))  # fmt: skip
    with running_worker(config, tmp_path / "state", "ops", tmp_path / "w.log") as env:
        assert sh(env, "secrets", "set", "TF-DB-PASSWORD", input_text=SECRET).returncode == 0
        run = _waiting(env, "infra", "apply", "--env", "staging")
        assert sh(env, "approve", str(run), "--as", "pia").returncode == 0
        done = _finished(env, run)
        assert done["phase"] == "succeeded", done["reason"]
        assert _outputs(env, "staging")["aks_cluster"] == "aks-quikapp-staging"
    assert not list((tmp_path / "state").rglob("terraform.tfstate.d"))
    with psycopg.connect(
        os.environ[PG_ENV].replace("postgresql+psycopg://", "postgresql://")
    ) as db:
        names = [r[0] for r in db.execute(f"SELECT name FROM {schema}.states").fetchall()]
        db.execute(f"DROP SCHEMA {schema} CASCADE")
    assert names == ["default"]


def test_a_lock_left_behind_is_named_and_released_after_approval(tmp_path: Path) -> None:
    """A lock a dead operation left (as a remote backend keeps it) blocks plans with its id and
    the command that releases it; the release waits for the environment's approvers. On the
    fake tool, whose locks outlive their holder as an azurerm blob lease does."""
    from shipline.domain.ports import InfraWork
    from shipline.infra.fake import FakeInfra

    config = _project(tmp_path, tool="fake")
    state = tmp_path / "state"
    data = state / "infra" / "platform" / "staging" / "data"
    held = FakeInfra().lock(InfraWork(root=config.parent / "terraform", data_dir=data))
    with running_worker(config, state, "ops", tmp_path / "w.log") as env:
        assert sh(env, "secrets", "set", "TF-DB-PASSWORD", input_text=SECRET).returncode == 0
        code, data_ = _json(env, "infra", "plan", "--env", "staging")
        assert code == 1
        error = _stage(data_, "staging:plan")["steps"][0]["error"]
        assert f"locked by another operation (lock {held})" in error
        assert f"shipline infra unlock --env staging --stack platform --lock-id {held}" in error
        bad = sh(env, "infra", "unlock", "--env", "staging", "--lock-id", "two words")
        assert bad.returncode == 2
        run = _waiting(env, "infra", "unlock", "--env", "staging", "--lock-id", held)
        assert sh(env, "approve", str(run), "--as", "pia").returncode == 0
        assert _finished(env, run)["phase"] == "succeeded"
        code, data_ = _json(env, "infra", "plan", "--env", "staging")
        assert code == 0, data_["reason"]
        plan = _stage(data_, "staging:plan")["outputs"]["plan.platform"]
        assert "fake_value.dbPassword" in plan["add"]
