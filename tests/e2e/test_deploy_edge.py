"""The deploy edge as a user meets it: bad input refused when the run is submitted (exit 2, one
line, nothing queued), an in-sync deploy that changes nothing, scale bounds, and history."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.worker import running_worker, sh

PROJECT = Path(__file__).parent / "projects" / "memory" / "shipline.yaml"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("edge")
    with running_worker(PROJECT, home / "state", "ann", home / "worker.log") as environ:
        done = sh(environ, "deploy", "--env", "dev", "--services", "api", "--tag", "1.0.0")
        assert done.returncode == 0, done.stdout + done.stderr
        yield environ


def _runs(env: dict[str, str]) -> int:
    return len(json.loads(sh(env, "runs", "list", "--json").stdout))


CASES = {
    "tag-with-space": (["deploy", "--env", "dev", "--services", "api", "--tag", "bad tag!"],
                       "is not a valid image tag"),
    "tag-as-path": (["deploy", "--env", "dev", "--services", "api", "--tag", "../../etc"],
                    "is not a valid image tag"),
    "set-reserved": (["deploy", "--env", "dev", "--services", "api", "--tag", "1",
                      "--set", "PYTHONPATH=/tmp/evil"], "is reserved"),
    "set-not-a-name": (["deploy", "--env", "dev", "--services", "api", "--tag", "1",
                        "--set", "a b=1"], "is not NAME=VALUE"),
    "set-injection": (["deploy", "--env", "dev", "--services", "api", "--tag", "1",
                       "--set", "$(id)=1"], "is not NAME=VALUE"),
    "rollback-unknown-revision": (["rollback", "--env", "dev", "--services", "api",
                                   "--revision", "99"], "has no revision 99"),
    "rollback-without-a-previous": (["rollback", "--env", "dev", "--services", "web"],
                                    "has no revision"),
    "scale-above-the-tier": (["scale", "--env", "dev", "--services", "api", "--replicas", "9"],
                             "outside the nonprod tier's bounds"),
    "logs-outside-the-folder": (["logs", "--env", "dev", "--service", "../../../tmp/x"],
                                "unknown service"),
    "preview-bad-tag": (["preview", "--env", "dev", "--services", "api", "--tag", "a/b"],
                        "is not a valid image tag"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES), ids=sorted(CASES))
def test_bad_input_is_refused_at_submit(env: dict[str, str], case: str) -> None:
    args, message = CASES[case]
    before = _runs(env)
    done = sh(env, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr.splitlines()[0], done.stderr
    assert "Traceback" not in done.stderr
    assert _runs(env) == before, "nothing was queued"


def test_in_sync_force_scale_and_history(env: dict[str, str]) -> None:
    again = sh(env, "deploy", "--env", "dev", "--services", "api", "--tag", "1.0.0", "--json")
    assert again.returncode == 0
    logs = json.loads(sh(env, "runs", "logs", str(json.loads(again.stdout)["id"]), "--json").stdout)
    assert any("in sync, nothing to do" in line["line"] for line in logs["logs"])

    def revisions() -> list[dict[str, object]]:
        found: list[dict[str, object]] = json.loads(
            sh(env, "history", "--env", "dev", "--service", "api", "--json").stdout
        )
        return found

    assert [r["version"] for r in revisions()] == ["1.0.0"]  # in sync: no new revision
    forced = sh(env, "deploy", "--env", "dev", "--services", "api", "--tag", "1.0.0", "--force")
    assert forced.returncode == 0
    assert len(revisions()) == 2
    scaled = sh(env, "scale", "--env", "dev", "--services", "api", "--replicas", "9",
                "--override-bounds", "load test INC-7")  # fmt: skip
    assert scaled.returncode == 0, scaled.stdout + scaled.stderr
    audit = sh(env, "audit", "list", "--json").stdout
    assert "scale.override" in audit and "load test INC-7" in audit
    upgraded = sh(env, "deploy", "--env", "dev", "--services", "api", "--tag", "1.1.0")
    assert upgraded.returncode == 0
    history = revisions()
    # The overridden count lasts until the next deploy, which keeps within the tier (1-3).
    assert [(r["version"], r["replicas"]) for r in history][-2:] == [("1.0.0", 9), ("1.1.0", 3)]
    assert all(r["by"] == "ann" and r["run"] for r in history)
    table = sh(env, "history", "--env", "dev", "--service", "api")
    assert "1.1.0" in table.stdout and "scale to 9" in table.stdout
