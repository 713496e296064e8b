"""The `memory` target's files: one per service, an older single file split on first use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipline.domain.deploy import DeploySpec
from shipline.engine.wiring import build_target
from shipline.errors import NotFoundError, TargetError


def test_each_service_has_a_file_of_its_own(tmp_path: Path) -> None:
    target = build_target("memory", tmp_path, {})
    target.apply(DeploySpec("qa", "api", "1.0.0"), cause="deploy")
    target.apply(DeploySpec("qa", "web", "2.0.0"), cause="deploy")
    target.apply(DeploySpec("dev", "api", "3.0.0"), cause="deploy")
    root = tmp_path / "targets" / "memory"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*.json")) == [
        "dev/api.json", "qa/api.json", "qa/web.json",
    ]  # fmt: skip
    assert json.loads((root / "qa" / "web.json").read_text())["spec"]["version"] == "2.0.0"
    # another process (a new target object) sees the same state
    again = build_target("memory", tmp_path, {})
    assert again.observe("qa", "api").version == "1.0.0"
    assert again.stop("qa") == ["api", "web"]
    with pytest.raises(NotFoundError):
        again.observe("qa", "web")
    assert again.observe("dev", "api").version == "3.0.0"
    assert again.stop("qa") == []


def test_a_state_folder_of_one_file_is_split_on_first_use(tmp_path: Path) -> None:
    older = build_target("memory", tmp_path / "new", {})
    older.apply(DeploySpec("qa", "api", "1.0.0"), cause="deploy")
    older.apply(DeploySpec("qa", "api", "1.1.0"), cause="deploy")
    entry = json.loads((tmp_path / "new" / "targets" / "memory" / "qa" / "api.json").read_text())
    legacy = tmp_path / "old" / "targets" / "memory.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"services": {"qa/api": entry}}))

    target = build_target("memory", tmp_path / "old", {})
    assert [r.version for r in target.history("qa", "api")] == ["1.0.0", "1.1.0"]
    assert target.apply(DeploySpec("qa", "api", "1.2.0"), cause="deploy") == 3
    assert not legacy.exists()
    assert legacy.with_suffix(".json.split").exists()


def test_a_name_that_is_not_a_plain_file_name_is_refused(tmp_path: Path) -> None:
    target = build_target("memory", tmp_path, {})
    with pytest.raises(TargetError, match="cannot name a file"):
        target.observe("qa", "../api")
