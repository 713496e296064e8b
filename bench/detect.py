"""Change detection speed: `ci detect` against plain `git diff --name-only base...head`.

Generates a repository of 20,000 files and 5,000 commits (with merges, renames, deletions), then
times, in the same run, best of N:
  - git itself:      git diff --name-only base...head
  - shipline:        the detection `shipline ci detect` does (its git diff + mapping to services),
  - the whole CLI:   `shipline ci detect --json` as a process (adds Python start-up and imports).
Goal: shipline's detection within 1.3x of git itself.

Run: .venv/bin/python bench/detect.py [--files 20000] [--commits 5000] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import best_of
from tests.ci_repo import STACKS, generate

from shipline.ci.git import changed_paths
from shipline.config.loader import load_config
from shipline.domain.changes import affected_services


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--commits", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    services = [(f"svc-{i:02d}", STACKS[i % len(STACKS)]) for i in range(22)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        repo = generate(
            folder / "repo", services, files=args.files, commits=args.commits, keep_trees=False
        )
        generated = time.perf_counter() - start
        lines = ["project: bench", "stacks:"]
        lines += [
            f"  {s}: {{port: 8080, healthPath: /health, paths: ['docker/{s}/**']}}" for s in STACKS
        ]
        lines.append("services:")
        lines += [
            f"  - {{name: {n}, stack: {s}, paths: ['services/{n}/**'], sharedPaths: ['shared/proto/**']}}"
            for n, s in services
        ]
        lines.append("ci: {buildAllPaths: ['.ci/**']}")
        (repo.path / "shipline.yaml").write_text("\n".join(lines) + "\n")
        config = load_config(repo.path / "shipline.yaml")
        base, head = repo.sha(repo.marks[len(repo.marks) // 10]), "main"
        count = len(changed_paths(repo.path, base, head).paths)

        def plain_git() -> None:
            subprocess.run(
                ["git", "-C", str(repo.path), "diff", "--name-only", f"{base}...{head}"],
                capture_output=True,
                check=True,
            )

        def detection() -> None:
            changes = changed_paths(repo.path, base, head)
            affected_services(config, changes.paths, config.ci.build_all_paths)

        exe = Path(sys.executable).parent / "shipline"

        def cli() -> None:
            subprocess.run(
                [
                    str(exe),
                    "--config",
                    str(repo.path / "shipline.yaml"),
                    "ci",
                    "detect",
                    "--base",
                    base,
                    "--head",
                    head,
                    "--json",
                ],
                capture_output=True,
                check=True,
            )

        git_time = best_of(args.runs, plain_git)
        ours = best_of(args.runs, detection)
        whole = best_of(max(3, args.runs // 2), cli)
    print(
        json.dumps(
            {
                "repository": {
                    "files": args.files,
                    "commits": args.commits,
                    "generatedSeconds": round(generated, 1),
                    "changedPaths": count,
                },
                "gitDiffSeconds": round(git_time, 4),
                "shiplineDetectSeconds": round(ours, 4),
                "ratio": round(ours / git_time, 2),
                "cliProcessSeconds": round(whole, 4),
                "cliOverGit": round(whole / git_time, 2),
                "goal": {"within1.3xOfGit": ours / git_time <= 1.3},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
