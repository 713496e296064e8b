"""A target kind added from outside shipline: a package's `shipline.targets` entry point is
enough for the engine to deploy, verify, scale and roll back with it (no engine change), and
without the package the environment is refused at submission."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.worker import running_worker, sh

ROOT = Path(__file__).resolve().parents[2]
PROJECT = Path(__file__).parent / "projects" / "plugin" / "shipline.yaml"


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """A folder holding the installed metadata of a package that registers `ledger`."""
    folder = tmp_path / "site"
    info = folder / "shipline_ledger_target-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: shipline-ledger-target\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[shipline.targets]\nledger = tests.plugins.ledger_target:create\n"
    )
    return folder


@pytest.fixture
def env(tmp_path: Path, plugin_path: Path) -> Iterator[dict[str, str]]:
    os.environ["PYTHONPATH"] = os.pathsep.join([str(plugin_path), str(ROOT)])
    try:
        with running_worker(PROJECT, tmp_path / "state", "ann", tmp_path / "worker.log") as e:
            yield e
    finally:
        del os.environ["PYTHONPATH"]


def test_a_plugged_in_target_deploys_through_the_engine(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert sh(env, "validate").stderr == ""  # installed: no "not installed" warning
    for tag in ("1.0.0", "1.1.0"):
        done = sh(env, "deploy", "--env", "dev", "--services", "api", "--tag", tag, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert [s["phase"] for s in data["stages"]] == [
        "succeeded",
        "succeeded",
        "succeeded",
        "skipped",
    ]
    assert sh(env, "rollback", "--env", "dev", "--services", "api").returncode == 0
    ledger = json.loads((tmp_path / "state" / "ledger.json").read_text())
    assert [e["spec"]["version"] for e in ledger["dev/api"]] == ["1.0.0", "1.1.0", "1.0.0"]
    history = json.loads(sh(env, "history", "--env", "dev", "--service", "api", "--json").stdout)
    assert [(h["revision"], h["version"], h["by"]) for h in history] == [
        (1, "1.0.0", "ann"), (2, "1.1.0", "ann"), (3, "1.0.0", "ann"),
    ]  # fmt: skip


def test_without_the_package_the_environment_is_refused_at_submit(tmp_path: Path) -> None:
    env = {**os.environ, "SHIPLINE_CONFIG": str(PROJECT), "SHIPLINE_HOME": str(tmp_path)}
    env.pop("PYTHONPATH", None)
    checked = sh(env, "validate")
    assert checked.returncode == 0 and "target type 'ledger' is not installed" in checked.stderr
    refused = sh(env, "deploy", "--env", "dev", "--services", "api", "--tag", "1.0.0")
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[0].endswith("no such target type is installed")
    assert "Traceback" not in refused.stderr
