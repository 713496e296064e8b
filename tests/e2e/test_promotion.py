"""Promotion up the ladder on the local target, through the CLI and a worker: a release deployed
to dev, promoted dev -> qa -> staging in one run (an approval at qa, a canary at staging, smoke
and load gates with their JUnit reports); a second release whose load gate fails at qa: qa rolled
back to the first release and staging untouched; and the promotions the ladder refuses."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.worker import running_worker, sh

PROJECT = Path(__file__).parent / "projects" / "promote"
# The load gate is QuikApp's reference k6 script, as a project would copy it.
LOAD_GATE = Path(__file__).parents[2] / "examples" / "quikapp" / "tests" / "load.js"


def _release(env: dict[str, str], folder: Path, name: str, version: str) -> None:
    manifest = folder / f"{name}.json"
    manifest.write_text(json.dumps({
        "kind": "BuildManifest", "tag": version, "run": 1,
        "services": {s: {"version": version, "tag": version} for s in ("api", "web")},
    }))  # fmt: skip
    made = sh(env, "release", "create", "--from-manifest", str(manifest), "--name", name)
    assert made.returncode == 0, made.stderr


def _run(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    done = sh(env, *args, "--json", timeout=300)
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout)


def _versions(env: dict[str, str]) -> dict[str, dict[str, str | None]]:
    rows = json.loads(sh(env, "status", "--json").stdout)
    found: dict[str, dict[str, str | None]] = {}
    for row in rows:
        found.setdefault(row["environment"], {})[row["service"]] = row["version"]
    return found


def _finished(env: dict[str, str], run: int) -> dict[str, Any]:
    end = time.monotonic() + 240
    while time.monotonic() < end:
        shown = json.loads(sh(env, "runs", "show", str(run), "--json").stdout)
        if shown["phase"] not in ("pending", "queued", "running", "waiting"):
            return dict(shown)
        time.sleep(0.5)
    raise AssertionError(f"run {run} did not finish")


def _promote_with_approval(env: dict[str, str], release: str) -> dict[str, Any]:
    started = sh(env, "promote", "--from", "dev", "--to", "qa,staging", "--release", release,
                 "--detach", "--json")  # fmt: skip
    assert started.returncode == 3, started.stdout + started.stderr
    run = int(json.loads(started.stdout)["run"])
    end = time.monotonic() + 120
    while sh(env, "approve", str(run), "--as", "quinn").returncode != 0:
        assert time.monotonic() < end, "the promotion never waited for qa's approval"
        time.sleep(0.5)
    return _finished(env, run)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    shutil.copy(LOAD_GATE, project / "gates" / "load.js")
    with running_worker(
        project / "shipline.yaml", tmp_path / "state", "dev", tmp_path / "worker.log"
    ) as environ:
        try:
            yield environ
        finally:
            for name in ("dev", "qa", "staging"):
                sh(environ, "down", "--env", name)


def test_a_release_climbs_the_ladder_and_a_failing_gate_rolls_its_rung_back(
    env: dict[str, str], tmp_path: Path
) -> None:
    # What staging ran before: the promoted release's api goes there as a canary against it;
    # web, never deployed there, as a rolling update (a canary needs a stable to compare).
    code, data = _run(env, "deploy", "--env", "staging", "--tag", "0.9.0", "--services", "api",
                      "--skip-tests")  # fmt: skip
    assert code == 0, data["reason"]
    assert "tests" not in {s["name"] for s in data["stages"]}  # --skip-tests
    _release(env, tmp_path, "r1", "1.0.0")
    code, data = _run(env, "deploy", "--env", "dev", "--release", "r1")
    assert code == 0, data["reason"]
    phases = {s["name"]: s["phase"] for s in data["stages"]}
    assert phases["tests"] == "succeeded"
    dev_report = Path(data["report"]).with_suffix(".md").read_text()
    assert "tests zap: not run ('zap-baseline.py' is not installed here)" in dev_report
    # the run's own view says it too, not a bare "succeeded"
    (zap,) = [st for s in data["stages"] if s["name"] == "tests" for st in s["steps"]
              if st["name"] == "zap"]  # fmt: skip
    assert zap["note"] == "not run: 'zap-baseline.py' is not installed here"
    (tests,) = [s for s in data["stages"] if s["name"] == "tests"]
    assert tests["outputs"]["zap.skipped"] is True and "note" not in tests["outputs"]
    shown = sh(env, "runs", "show", str(data["id"]))
    assert "not run: 'zap-baseline.py' is not installed here" in shown.stdout

    # Skipping a rung and promoting what never ran below are refused (exit 2).
    skipped = sh(env, "promote", "--from", "dev", "--to", "staging", "--release", "r1")
    assert skipped.returncode == 2 and "would skip qa" in skipped.stderr, skipped.stderr
    _release(env, tmp_path, "r2", "2.0.0")
    untried = sh(env, "promote", "--from", "dev", "--to", "qa", "--release", "r2")
    assert untried.returncode == 2 and "did not succeed in dev" in untried.stderr

    # A dry run: each rung's gates and versions, refused as the real one is; nothing queued.
    runs_before = sh(env, "runs", "list", "--json").stdout
    code, plan = _run(env, "promote", "--from", "dev", "--to", "qa,staging", "--release", "r1",
                      "--dry-run")  # fmt: skip
    assert code == 0, plan
    assert (plan["from"], plan["release"]) == ("dev", "r1")
    qa, staging = plan["environments"]
    groups = [(g["name"], g["displayName"]) for g in qa["approvals"]["groups"]]
    assert (qa["environment"], groups, qa["strategy"]["type"], qa["tests"]) == (
        "qa",
        [("qa-lead", "qa-lead")],
        "rolling",
        ["smoke", "load"],
    )
    assert (staging["environment"], staging["approvals"], staging["strategy"]["type"]) == (
        "staging",
        None,
        "canary",
    )
    assert qa["versions"]["api"] == {"now": None, "after": "1.0.0", "rollout": "rolling"}
    assert staging["versions"] == {
        "api": {"now": "0.9.0", "after": "1.0.0", "rollout": "canary"},
        "web": {"now": None, "after": "1.0.0", "rollout": "rolling", "why": "first deploy"},
    }
    table = sh(env, "promote", "--from", "dev", "--to", "qa,staging", "--release", "r1",
               "--dry-run", "--skip-tests")  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "promote dev -> qa, staging (release r1): dry run, nothing queued" in table.stdout
    assert "0.9.0 -> 1.0.0" in table.stdout and "smoke" not in table.stdout  # --skip-tests
    # one canary, of 2 s of analysis (bakeSeconds), and the service that rolls, with why
    assert staging["canaries"] == {"count": 1, "seconds": 2.0, "inAll": 2.0}
    assert qa["canaries"] is None
    assert "canary (1: 2.0 s), rolling (1: first deploy)" in table.stdout
    refused = sh(env, "promote", "--from", "dev", "--to", "staging", "--release", "r1",
                 "--dry-run")  # fmt: skip
    assert refused.returncode == 2 and "would skip qa" in refused.stderr
    # an emergency says why, and needs a rung with business hours to override
    bare = sh(env, "promote", "--from", "dev", "--to", "qa,staging", "--release", "r1",
              "--emergency", "--dry-run")  # fmt: skip
    assert bare.returncode == 2 and "--emergency needs --reason" in bare.stderr, bare.stderr
    pointless = sh(env, "promote", "--from", "dev", "--to", "qa,staging", "--release", "r1",
                   "--emergency", "--reason", "INC-1", "--detach")  # fmt: skip
    assert pointless.returncode == 2, pointless.stderr
    assert "--emergency: qa, staging have no business hours to override" in pointless.stderr
    assert sh(env, "runs", "list", "--json").stdout == runs_before

    first = _promote_with_approval(env, "r1")
    assert first["phase"] == "succeeded", first["reason"]
    phases = {s["name"]: s["phase"] for s in first["stages"]}
    assert [phases[f"{e}:{s}"] for e in ("qa", "staging") for s in ("deploy", "verify", "tests")
            ] == ["succeeded"] * 6  # fmt: skip
    assert phases["qa:rollback"] == phases["staging:rollback"] == "skipped"
    assert (first["votes"][0]["user"], first["votes"][0]["stage"]) == ("quinn", "qa:deploy")
    logs = json.loads(sh(env, "runs", "logs", str(first["id"]), "--json").stdout)["logs"]
    lines = [line["line"] for line in logs]
    assert any("canary 1.0.0 against stable 0.9.0" in line for line in lines)  # at staging
    (canary,) = [st for s in first["stages"] if s["name"] == "staging:deploy"
                 for st in s["steps"] if st["name"] == "api"]  # fmt: skip
    assert canary["note"].startswith("canary 1.0.0 promoted after "), canary
    assert "succeeded)" in canary["note"]  # its analyses' verdicts, counted
    (web,) = [st for s in first["stages"] if s["name"] == "staging:deploy"
              for st in s["steps"] if st["name"] == "web"]  # fmt: skip
    assert web["note"] == "rolling update (first deploy: no canary)", web  # as the dry run said
    assert any(line.startswith("load: p50") for line in lines)  # k6's percentiles
    tests = next(s for s in first["stages"] if s["name"] == "qa:tests")["outputs"]
    assert tests["load.junit"]["tests"] == 2 and tests["load.junit"]["failures"] == 0
    assert Path(tests["load.artifacts"], "load.json").is_file()
    assert _versions(env) == {e: {"api": "1.0.0", "web": "1.0.0"} for e in ("dev", "qa", "staging")}
    ladder = sh(env, "status").stdout  # the ladder as columns, with the release each came from
    assert "versions up the ladder" in ladder and "1.0.0 healthy [r1]" in ladder
    # the promotion is listed under each environment it moved through, and says which
    (listed,) = [r for r in json.loads(sh(env, "runs", "list", "--env", "qa", "--json").stdout)
                 if r["pipeline"] == "promote"]  # fmt: skip
    assert (listed["id"], listed["environments"]) == (first["id"], ["qa", "staging"])
    assert (
        f"run {first['id']} promote qa, staging: succeeded"
        in sh(env, "runs", "show", str(first["id"])).stdout
    )
    # the vote on qa's rung is found under qa: the stage's environment, not the run's last
    voted = [r["details"] for r in json.loads(sh(env, "audit", "list", "--env", "qa", "--json")
             .stdout) if r["action"] == "approval.approve"]  # fmt: skip
    assert [(v["run"], v["stage"], v["environment"]) for v in voted] == [
        (first["id"], "qa:deploy", "qa")
    ]
    ended = json.loads(sh(env, "audit", "list", "--env", "staging", "--json").stdout)[0]
    assert (ended["action"], ended["details"]["phase"], ended["details"]["release"]) == (
        "run.finish",
        "succeeded",
        "r1",
    )

    # Release 2 reaches dev; qa's load threshold is tightened beyond what any service meets.
    code, data = _run(env, "deploy", "--env", "dev", "--release", "r2")
    assert code == 0, data["reason"]
    config = Path(env["SHIPLINE_CONFIG"])
    config.write_text(config.read_text().replace("P95_MS=250", "P95_MS=0.0001"))
    second = _promote_with_approval(env, "r2")
    assert second["phase"] == "failed"
    phases = {s["name"]: s["phase"] for s in second["stages"]}
    assert (phases["qa:tests"], phases["qa:rollback"]) == ("failed", "succeeded")
    assert all(phases[f"staging:{s}"] == "skipped" for s in ("deploy", "verify", "tests"))
    assert "p(95)<0.0001" in second["reason"] and "qa:tests" in second["reason"], second["reason"]
    # The run's report: Markdown and one HTML page, linked from `runs show`.
    report = Path(second["report"])
    assert report.name == f"run-{second['id']}.html" and report.is_file()
    summary = report.with_suffix(".md").read_text()
    assert "| qa:tests | failed |" in summary and "p95" in summary  # k6's percentiles
    assert "qa:tests load (FAILED): 2 test(s), 1 failed" in summary  # p95, not the errors
    assert "qa: approved by quinn" not in summary  # votes name their stage
    assert "qa:deploy: approved by quinn" in summary
    assert "| qa | api | 1.0.0 | 1.0.0 |" in summary  # rolled back: as before
    assert "| staging | api | 1.0.0 | 1.0.0 |" in summary
    first_page = Path(first["report"]).read_text()
    assert "<svg" in first_page and "canary analysis" in first_page.lower()
    assert _versions(env) == {
        "dev": {"api": "2.0.0", "web": "2.0.0"},
        "qa": {"api": "1.0.0", "web": "1.0.0"},  # rolled back to the first release
        "staging": {"api": "1.0.0", "web": "1.0.0"},  # untouched
    }


REMOTE = """
project: remote
stacks:
  python: {port: 8000, healthPath: /health}
services:
  - {name: api, stack: python}
tiers:
  nonprod: {}
targets:
  here: {type: local}
  cluster: {type: kubernetes}
environments:
  - {name: dev, cluster: local, namespace: dev, tier: nonprod, target: here}
  - {name: prod, cluster: aks, namespace: prod, tier: nonprod, target: cluster}
ladder: [dev, prod]
"""


def test_a_release_that_was_not_pushed_never_goes_to_a_cluster(tmp_path: Path) -> None:
    (tmp_path / "shipline.yaml").write_text(REMOTE)
    env = {**os.environ, "SHIPLINE_CONFIG": str(tmp_path / "shipline.yaml"),
           "SHIPLINE_HOME": str(tmp_path / "state"), "SHIPLINE_USER": "dev"}  # fmt: skip
    env.pop("SHIPLINE_DATABASE_URL", None)
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"kind": "BuildManifest", "tag": "1.0.0", "services": {
        "api": {"version": "1.0.0", "tag": "1.0.0", "digest": None}}}))  # fmt: skip
    assert (
        sh(env, "release", "create", "--from-manifest", str(manifest), "--name", "r1").returncode
        == 0
    )
    for args in (("promote", "--from", "dev", "--to", "prod"), ("deploy", "--env", "prod")):
        refused = sh(env, *args, "--release", "r1")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "release r1 was not pushed (no image digest for api)" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_a_rung_without_a_kubeconfig_is_refused_before_any_run(tmp_path: Path) -> None:
    """prod's kubernetes target has no kubeconfig (none set, no KUBECONFIG): a promotion up to
    it, a deploy to it and its rollback are refused when submitted (exit 2, saying what to
    set), not failed at the deploy step after the rungs below; no run is recorded."""
    (tmp_path / "shipline.yaml").write_text(REMOTE)
    env = {**os.environ, "SHIPLINE_CONFIG": str(tmp_path / "shipline.yaml"),
           "SHIPLINE_HOME": str(tmp_path / "state"), "SHIPLINE_USER": "dev"}  # fmt: skip
    for name in ("SHIPLINE_DATABASE_URL", "KUBECONFIG"):
        env.pop(name, None)
    for args in (("promote", "--from", "dev", "--to", "prod", "--services", "api"),
                 ("deploy", "--env", "prod", "--services", "api"),
                 ("rollback", "--env", "prod", "--services", "api")):  # fmt: skip
        refused = sh(env, *args, *(("--tag", "1.0.0") if args[0] != "rollback" else ()))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert (
            "environment 'prod': its target 'cluster' cannot be used: the kubernetes target"
            " needs a kubeconfig" in refused.stderr
        ), refused.stderr
        assert "hint: set 'kubeconfig:' on the target, or KUBECONFIG" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert json.loads(sh(env, "runs", "list", "--json").stdout) == []


def test_a_trigger_deploys_what_its_rule_names(env: dict[str, str]) -> None:
    """No `triggers:` configured: the spec's rules apply (main -> staging; pull requests run
    CI only; other branches nothing)."""
    dry = json.loads(sh(env, "trigger", "--ref", "refs/heads/main", "--dry-run", "--json").stdout)
    assert [(p["action"], p.get("environment")) for p in dry] == [("deploy", "staging")]
    assert "run" not in dry[0]
    nothing = sh(env, "trigger", "--ref", "refs/heads/feature/x", "--tag", "1.0.0")
    assert nothing.returncode == 0 and "nothing runs" in nothing.stdout
    missing = sh(env, "trigger", "--ref", "refs/heads/main")
    assert missing.returncode == 2 and "--tag TAG or --release NAME" in missing.stderr
    queued = json.loads(sh(env, "trigger", "--ref", "refs/heads/main", "--tag", "1.0.0",
                           "--json").stdout)  # fmt: skip
    run = _finished(env, int(queued[0]["run"]))
    assert (run["pipeline"], run["environment"], run["phase"]) == ("deploy", "staging", "succeeded")
    assert _versions(env)["staging"] == {"api": "1.0.0", "web": "1.0.0"}
