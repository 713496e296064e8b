"""`ci detect` keeps the configuration's path rules beside the state: while no configuration
file changed it answers without loading the configuration; a changed file (the main one or an
include) is loaded and checked again, so a broken configuration is never answered from the
rules it had before."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shipline.engine import detection, wiring
from shipline.errors import ConfigErrors

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@x", "-c", "commit.gpgsign=false"]


def _config(folder: Path, auth_paths: str) -> None:
    (folder / "shipline.yaml").write_text(
        "project: p\ninclude: [services.yaml]\nstacks:\n  go: {port: 8080, healthPath: /health}\n"
    )
    (folder / "services.yaml").write_text(
        "services:\n"
        f"  - {{name: auth, stack: go, paths: ['{auth_paths}']}}\n"
        "  - {name: chat, stack: go, paths: ['services/chat/**']}\n"
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _config(tmp_path, "services/auth/**")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=tmp_path, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*GIT, "commit", "-qm", "base"], cwd=tmp_path, check=True)
    for name in ("auth", "chat"):
        (tmp_path / "services" / name).mkdir(parents=True)
        (tmp_path / "services" / name / "main.go").write_text("package main\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "auth.md").write_text("# auth\n")
    subprocess.run([*GIT, "add", "services/auth", "docs"], cwd=tmp_path, check=True)
    subprocess.run([*GIT, "commit", "-qm", "auth"], cwd=tmp_path, check=True)
    return tmp_path


def _detect(repo: Path) -> list[str]:
    found = detection.detect_at(repo / "shipline.yaml", {}, "HEAD~1", "HEAD")
    return list(found.services)


def _no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path) -> object:
        raise AssertionError(f"the configuration was loaded: {path}")

    monkeypatch.setattr(wiring, "load_config_files", refuse, raising=False)


def test_unchanged_configuration_is_not_loaded_again(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _detect(repo) == ["auth"]
    assert (repo / ".shipline" / "cache" / "path-rules.json").is_file()
    _no_loading(monkeypatch)
    assert _detect(repo) == ["auth"]


def test_a_changed_include_is_read_again(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _detect(repo) == ["auth"]
    _config(repo, "docs/**")  # only services.yaml differs
    assert _detect(repo) == ["auth"]  # now because of docs/auth.md
    found = detection.detect_at(repo / "shipline.yaml", {}, "HEAD~1", "HEAD")
    assert found.services["auth"] == ["docs/auth.md (service path)"]
    _no_loading(monkeypatch)
    assert _detect(repo) == ["auth"]  # saved again


def test_a_broken_configuration_is_reported_not_answered_from_before(repo: Path) -> None:
    assert _detect(repo) == ["auth"]
    (repo / "services.yaml").write_text("services:\n  - {name: auth, stack: nope}\n")
    with pytest.raises(ConfigErrors) as caught:
        _detect(repo)
    assert "services.yaml" in str(caught.value.lines())


def test_state_folder_from_the_environment(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("home")
    detection.detect_at(repo / "shipline.yaml", {"SHIPLINE_HOME": str(home)}, "HEAD~1", "HEAD")
    assert (home / "cache" / "path-rules.json").is_file()
    assert not (repo / ".shipline").exists()
