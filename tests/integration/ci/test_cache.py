"""The recipes' dependency cache: saved after a good build under its key, restored on the next
build with the same key on a clean checkout, a new key misses, `--fresh-cache` skips the restore,
`ci cache list | clear`; and archives that try to leave the service folder are refused."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipline.ci.cache import CacheError, DependencyCache
from tests.ci_repo import commit_all
from tests.e2e.worker import EXE, running_worker

CONFIG = """
project: cache-demo
stacks:
  python:
    port: 8000
    healthPath: /health
    build:
      cacheKey: deps-{hash:requirements.txt}
      cachePaths: [vendor]
      setup: ['test -f vendor/lib.txt || (mkdir -p vendor && cp requirements.txt vendor/lib.txt && echo DOWNLOADED)']
      test: ['test -f vendor/lib.txt']
services:
  - {name: api, stack: python, image: demo/api}
ci:
  builder: memory
"""


def test_save_restore_miss_clear(tmp_path: Path) -> None:
    folder = tmp_path / "svc"
    (folder / "node_modules" / "a").mkdir(parents=True)
    (folder / "node_modules" / "a" / "index.js").write_text("module.exports = 1\n")
    cache = DependencyCache(tmp_path / "cache")
    assert cache.save("nestjs", "npm-20-abc", folder, ["node_modules", "absent"]) > 0  # type: ignore[operator]
    assert cache.save("nestjs", "npm-20-none", folder, ["absent"]) is None
    clean = tmp_path / "clean"
    clean.mkdir()
    assert not cache.restore("nestjs", "npm-20-other", clean)
    assert cache.restore("nestjs", "npm-20-abc", clean)
    assert (clean / "node_modules" / "a" / "index.js").read_text() == "module.exports = 1\n"
    [entry] = cache.entries()
    assert (entry.stack, entry.key, entry.paths) == ("nestjs", "npm-20-abc", ("node_modules",))
    assert entry.last_used is not None
    assert cache.entries("go") == []
    assert [e.key for e in cache.clear("nestjs")] == ["npm-20-abc"]
    assert cache.entries() == [] and not cache.restore("nestjs", "npm-20-abc", clean)


@pytest.mark.parametrize("member", ["../escaped.txt", "/etc/escaped.txt", "link"])
def test_an_archive_cannot_write_outside_the_folder(tmp_path: Path, member: str) -> None:
    cache = DependencyCache(tmp_path / "cache")
    archive = cache._archive("go", "k")
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
            info = tarfile.TarInfo("link/x")
        data = b"bad"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    into = tmp_path / "svc"
    into.mkdir()
    if member.startswith("/"):  # an absolute name is taken as relative to the folder
        assert cache.restore("go", "k", into)
        assert (into / "etc" / "escaped.txt").read_bytes() == b"bad"
    else:
        with pytest.raises(CacheError, match="could not be restored"):
            cache.restore("go", "k", into)
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/etc/escaped.txt").exists()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    repo = tmp_path / "repo"
    service = repo / "services" / "api"
    service.mkdir(parents=True)
    (service / "requirements.txt").write_text("flask==3.0\n")
    (service / "Dockerfile").write_text("FROM scratch\n")
    (repo / "shipline.yaml").write_text(CONFIG)
    (repo / ".gitignore").write_text("vendor/\n")
    commit_all(repo, "api")
    with running_worker(
        repo / "shipline.yaml", tmp_path / "state", "ci", tmp_path / "worker.log"
    ) as env:
        yield repo, env


def _build(env: dict[str, str], *extra: str) -> tuple[dict[str, object], list[str]]:
    done = subprocess.run(
        [EXE, "ci", "build", "--services", "all", "--json", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    run = json.loads(done.stdout)
    manifest = json.loads(Path(str(run["manifest"])).read_text())
    logs = subprocess.run(
        [EXE, "runs", "logs", str(run["id"]), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return manifest["services"]["api"], [e["line"] for e in json.loads(logs.stdout)["logs"]]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_clean_checkout_restores_the_dependencies(project: tuple[Path, dict[str, str]]) -> None:
    repo, env = project
    vendor = repo / "services" / "api" / "vendor"
    first, lines = _build(env)
    assert first["cache"] == "miss" and "DOWNLOADED" in lines
    assert any(line.startswith("cache saved: deps-") for line in lines)
    subprocess.run(["rm", "-rf", str(vendor)], check=True)  # a new agent: nothing on disk
    second, lines = _build(env)
    assert second["cache"] == "hit" and "DOWNLOADED" not in lines
    assert (vendor / "lib.txt").read_text() == "flask==3.0\n"
    listed = json.loads(_cli(env, "ci", "cache", "list", "--json").stdout)
    assert [(e["stack"], e["paths"]) for e in listed] == [("python", ["vendor"])]
    assert listed[0]["key"] == first["cacheKey"] and listed[0]["lastUsed"]
    subprocess.run(["rm", "-rf", str(vendor)], check=True)
    fresh, lines = _build(env, "--fresh-cache")
    assert fresh["cache"] == "miss" and "DOWNLOADED" in lines
    (repo / "services" / "api" / "requirements.txt").write_text("flask==3.1\n")
    subprocess.run(["rm", "-rf", str(vendor)], check=True)
    changed, lines = _build(env)
    assert changed["cache"] == "miss" and changed["cacheKey"] != first["cacheKey"]
    assert len(json.loads(_cli(env, "ci", "cache", "list", "--json").stdout)) == 2
    cleared = _cli(env, "ci", "cache", "clear", "--stack", "python", "--json")
    assert len(json.loads(cleared.stdout)["removed"]) == 2
    assert _cli(env, "ci", "cache", "clear", "--stack", "nope").returncode == 2
    assert _cli(env, "ci", "cache", "list").stdout.strip() == "no dependency cache saved"
