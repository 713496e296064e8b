"""Change detection on a generated monorepo (300+ commits, merges, renames, deletions, shared
and stack-wide paths) equals a computation from the generator's own trees, without git."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from shipline.ci.git import ShallowCloneError, changed_paths
from shipline.config.loader import load_config
from shipline.domain.changes import affected_services
from shipline.domain.models import Config
from shipline.errors import UserError
from tests.ci_repo import Repo, generate

SERVICES = [
    ("auth", "springboot"),
    ("gateway", "nestjs"),
    ("chat", "elixir"),
    ("search", "go"),
    ("files", "go"),
    ("ml", "python"),
]
SHARED = {"chat", "search", "gateway"}  # these declare shared/proto/**


def _config(folder: Path) -> Config:
    lines = ["project: mono", "stacks:"]
    for stack in ["springboot", "nestjs", "go", "elixir", "python"]:
        lines += [f"  {stack}: {{port: 8080, healthPath: /health, paths: ['docker/{stack}/**']}}"]
    lines.append("services:")
    for name, stack in SERVICES:
        shared = "['shared/proto/**']" if name in SHARED else "[]"
        lines.append(
            f"  - {{name: {name}, stack: {stack}, paths: ['services/{name}/**'], sharedPaths: {shared}}}"
        )
    lines.append("ci: {buildAllPaths: ['.ci/**']}")
    (folder / "shipline.yaml").write_text("\n".join(lines) + "\n")
    return load_config(folder / "shipline.yaml")


def _ancestors(repo: Repo, mark: int) -> set[int]:
    seen, todo = set(), [mark]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(repo.parents[m])
    return seen


def _merge_base(repo: Repo, a: int, b: int) -> int:
    common = _ancestors(repo, a) & _ancestors(repo, b)
    best = [m for m in common if not any(m != o and m in _ancestors(repo, o) for o in common)]
    assert len(best) == 1
    return best[0]


def _expected(repo: Repo, base: int, head: int) -> dict[str, bool]:
    """Services touched between the merge base and head, by plain string rules."""
    before, after = repo.trees[_merge_base(repo, base, head)], repo.trees[head]
    paths = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    if any(p.startswith(".ci/") for p in paths):
        return dict.fromkeys((n for n, _ in SERVICES), True)
    touched: dict[str, bool] = {}
    for name, stack in SERVICES:
        if (
            any(p.startswith(f"services/{name}/") for p in paths)
            or any(p.startswith(f"docker/{stack}/") for p in paths)
            or (name in SHARED and any(p.startswith("shared/proto/") for p in paths))
        ):
            touched[name] = True
    return touched


@pytest.fixture(scope="module")
def mono(tmp_path_factory: pytest.TempPathFactory) -> tuple[Repo, Config]:
    folder = tmp_path_factory.mktemp("mono")
    repo = generate(folder / "repo", SERVICES, files=400, commits=330, seed=11)
    return repo, _config(folder)


def test_generated_history_has_what_the_issue_asks(mono: tuple[Repo, Config]) -> None:
    repo, _ = mono
    log = subprocess.run(
        ["git", "-C", str(repo.path), "log", "--all", "--format=%P", "--name-status", "-M"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert len(repo.marks) >= 300
    assert (
        sum(1 for line in log.splitlines() if len(line.split()) == 2 and len(line) == 81) > 5
    )  # merges
    statuses = {line[:1] for line in log.splitlines() if line[:1] in "RDM" and "\t" in line}
    assert {"R", "D", "M"} <= statuses


def test_detect_equals_the_independent_computation(mono: tuple[Repo, Config]) -> None:
    repo, config = mono
    rng = random.Random(3)
    pairs = [(rng.choice(repo.marks), rng.choice(repo.marks)) for _ in range(60)]
    pairs += [(repo.branches["main"], tip) for tip in repo.branches.values()]
    pairs += [(tip, repo.branches["main"]) for tip in repo.branches.values()]
    checked = 0
    for base, head in pairs:
        if base not in repo.trees or head not in repo.trees:
            continue
        changes = changed_paths(repo.path, repo.sha(base), repo.sha(head))
        got = affected_services(config, changes.paths, config.ci.build_all_paths)
        assert set(got.services) == set(_expected(repo, base, head)), (base, head)
        checked += 1
    assert checked >= 60


def test_unknown_base_means_everything_with_a_warning(mono: tuple[Repo, Config]) -> None:
    repo, _ = mono
    changes = changed_paths(repo.path, "0" * 40, "main")
    assert changes.everything
    assert "unknown" in changes.warnings[0]
    with pytest.raises(UserError, match="unknown head revision"):
        changed_paths(repo.path, "main", "no-such-branch")


def test_shallow_clone_is_a_clear_error(mono: tuple[Repo, Config], tmp_path: Path) -> None:
    repo, _ = mono
    branch = next(b for b in repo.branches if b.startswith("feature/"))
    clone = tmp_path / "shallow"
    subprocess.run(
        [
            "git",
            "clone",
            "-q",
            "--depth",
            "1",
            "--no-single-branch",
            f"file://{repo.path}",
            str(clone),
        ],
        check=True,
    )
    with pytest.raises(ShallowCloneError, match="shallow") as info:
        changed_paths(clone, "origin/main", f"origin/{branch}")
    assert "git fetch --deepen" in (info.value.hint or "")
