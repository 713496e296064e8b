"""Generate monorepos quickly with `git fast-import`, keeping (optionally) every commit's tree,
so that tests can compute changes without asking git."""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

STACKS = ["springboot", "nestjs", "go", "elixir", "python"]


@dataclass
class Repo:
    """A generated repository and what the generator knows about it."""

    path: Path
    trees: dict[int, dict[str, str]] = field(default_factory=dict)  # mark -> {path: content}
    parents: dict[int, list[int]] = field(default_factory=dict)
    branches: dict[str, int] = field(default_factory=dict)  # branch -> tip mark
    marks: list[int] = field(default_factory=list)

    shas: dict[int, str] = field(default_factory=dict)

    def sha(self, mark: int) -> str:
        """The commit id git gave to `mark`."""
        return self.shas[mark]


class _Stream:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def add(self, text: str) -> None:
        self.parts.append(text.encode())

    def data(self, content: str) -> None:
        raw = content.encode()
        self.parts.append(f"data {len(raw)}\n".encode() + raw + b"\n")


def generate(
    folder: Path,
    services: list[tuple[str, str]],
    *,
    files: int,
    commits: int,
    seed: int = 7,
    keep_trees: bool = True,
    merge_every: int = 12,
) -> Repo:
    """A repository with `files` files and about `commits` commits on main and feature branches,
    with merges, renames, deletions, shared and stack-wide paths."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(folder)], check=True)
    repo = Repo(folder)
    stream = _Stream()
    tree: dict[str, str] = {}
    per_service = max(1, (files - 40) // max(1, len(services)))
    for name, _stack in services:
        for i in range(per_service):
            tree[f"services/{name}/src/f{i}.txt"] = f"{name} {i}"
    for i in range(10):
        tree[f"shared/proto/p{i}.proto"] = f"proto {i}"
        tree[f"docs/d{i}.md"] = f"doc {i}"
    for stack in STACKS:
        tree[f"docker/{stack}/Dockerfile"] = f"FROM {stack}"
    tree[".ci/pipeline.yml"] = "ci"
    mark = 0
    time0 = 1_700_000_000

    def commit(
        branch: str,
        parents: list[int],
        changes: dict[str, str | None],
        message: str,
        renames: list[tuple[str, str]] = (),
    ) -> int:  # type: ignore[assignment]
        nonlocal mark
        mark += 1
        stream.add(f"commit refs/heads/{branch}\nmark :{mark}\n")
        stream.add(f"committer Gen <gen@example.com> {time0 + mark} +0000\n")
        stream.data(message)
        if parents:
            stream.add(f"from :{parents[0]}\n")
            for extra in parents[1:]:
                stream.add(f"merge :{extra}\n")
        for old, new in renames:
            stream.add(f'R "{old}" "{new}"\n')
        for path, content in changes.items():
            if content is None:
                stream.add(f'D "{path}"\n')
            else:
                stream.add(f'M 100644 inline "{path}"\n')
                stream.data(content)
        stream.add("\n")
        repo.parents[mark] = parents
        repo.marks.append(mark)
        return mark

    root = commit("main", [], dict(tree), "initial")
    if keep_trees:
        repo.trees[root] = dict(tree)
    main_tip, main_tree = root, dict(tree)
    open_branches: list[tuple[str, int, dict[str, str], int]] = []  # name, tip, tree, fork mark
    counter = 0

    def mutate(
        current: dict[str, str],
    ) -> tuple[dict[str, str | None], list[tuple[str, str]], dict[str, str]]:
        nonlocal counter
        counter += 1
        new_tree = dict(current)
        changes: dict[str, str | None] = {}
        renames: list[tuple[str, str]] = []
        roll = rng.random()
        paths = list(new_tree)
        if roll < 0.08:
            victim = rng.choice(paths)
            del new_tree[victim]
            changes[victim] = None
        elif roll < 0.16:
            old = rng.choice([p for p in paths if p.startswith("services/")] or paths)
            new = old.rsplit("/", 1)[0] + f"/renamed{counter}.txt"
            if new not in new_tree:
                new_tree[new] = new_tree.pop(old)
                renames.append((old, new))
        elif roll < 0.22:
            target = rng.choice([p for p in paths if p.startswith(("shared/", "docker/"))] or paths)
            new_tree[target] = f"{target} v{counter}"
            changes[target] = new_tree[target]
        else:
            for _ in range(rng.randint(1, 3)):
                name = rng.choice(services)[0]
                target = f"services/{name}/src/f{rng.randint(0, per_service + 3)}.txt"
                new_tree[target] = f"{target} v{counter}"
                changes[target] = new_tree[target]
        return changes, renames, new_tree

    for n in range(commits):
        if open_branches and (n % merge_every == 0):
            name, tip, btree, fork = open_branches.pop(0)
            merged = dict(main_tree)
            changes: dict[str, str | None] = {}
            base_tree = repo.trees.get(fork) if keep_trees else None
            for path in set(btree) | set(base_tree or {}):
                if base_tree is not None and btree.get(path) != base_tree.get(path):
                    if path in btree:
                        merged[path] = btree[path]
                        changes[path] = btree[path]
                    elif path in merged:
                        del merged[path]
                        changes[path] = None
            main_tip = commit("main", [main_tip, tip], changes, f"merge {name}")
            main_tree = merged
        elif rng.random() < 0.3 and len(open_branches) < 3:
            name = f"feature/b{n}"
            changes, renames, new_tree = mutate(main_tree)
            tip = commit(name, [main_tip], changes, f"start {name}", renames)
            open_branches.append((name, tip, new_tree, main_tip))
            if keep_trees:
                repo.trees[tip] = new_tree
            repo.branches[name] = tip
            continue
        elif open_branches and rng.random() < 0.4:
            i = rng.randrange(len(open_branches))
            name, tip, btree, fork = open_branches[i]
            changes, renames, new_tree = mutate(btree)
            tip = commit(name, [tip], changes, f"work on {name}", renames)
            open_branches[i] = (name, tip, new_tree, fork)
            if keep_trees:
                repo.trees[tip] = new_tree
            repo.branches[name] = tip
            continue
        else:
            changes, renames, main_tree = mutate(main_tree)
            main_tip = commit("main", [main_tip], changes, f"change {n}", renames)
        if keep_trees:
            repo.trees[main_tip] = dict(main_tree)
    repo.branches["main"] = main_tip
    marks_file = folder / ".git" / "marks"
    subprocess.run(
        ["git", "-C", str(folder), "fast-import", "--quiet", f"--export-marks={marks_file}"],
        input=b"".join(stream.parts),
        check=True,
    )
    for line in marks_file.read_text().splitlines():
        m, sha = line.split()
        repo.shas[int(m[1:])] = sha
    subprocess.run(["git", "-C", str(folder), "reset", "-q", "--hard", "main"], check=True)
    return repo


def commit_all(repo: Path, message: str, *, tag: str | None = None) -> None:
    """`git init` `repo` (on main) if needed and commit everything in it, optionally tagged."""
    steps = [] if (repo / ".git").exists() else [["init", "-q", "-b", "main"]]
    steps += [
        ["add", "."],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message],
    ]
    if tag:
        steps.append(["tag", tag])
    for argv in steps:
        subprocess.run(["git", "-C", str(repo), *argv], check=True)
