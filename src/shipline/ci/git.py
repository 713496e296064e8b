"""Changed paths between two revisions, with merge-base semantics (`base...head`), from git.

One `git diff` on the happy path; the slower questions (does the base exist, is the clone
shallow) are asked only when it fails. Renamed files count at both their old and new paths.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from shipline.errors import TechnicalError, UserError


class ShallowCloneError(UserError):
    """The clone lacks the history that holds the merge base."""


@dataclass(frozen=True)
class ChangeSet:
    """Paths changed on `head` since it left `base`; `everything` when the base is unknown."""

    paths: list[str]
    everything: bool = False
    warnings: list[str] = field(default_factory=list)


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise TechnicalError("git is not installed", hint="install git") from exc


def _exists(repo: Path, rev: str) -> bool:
    return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode == 0


def parse_name_status(output: bytes) -> list[str]:
    """Paths from `git diff --name-status -z` output (renames and copies give both paths)."""
    fields = output.split(b"\0")
    paths: list[str] = []
    i = 0
    while i < len(fields) and fields[i]:
        status = fields[i].decode()
        if status[:1] in ("R", "C"):
            paths.extend((fields[i + 1].decode(), fields[i + 2].decode()))
            i += 3
        else:
            paths.append(fields[i + 1].decode())
            i += 2
    return paths


def changed_paths(repo: Path, base: str, head: str) -> ChangeSet:
    """Paths that differ between the merge base of `base` and `head`, and `head`."""
    done = _git(repo, "diff", "--name-status", "-z", "-M", "--no-color", f"{base}...{head}", "--")
    if done.returncode == 0:
        return ChangeSet(sorted(set(parse_name_status(done.stdout))))
    if _git(repo, "rev-parse", "--git-dir").returncode != 0:
        raise UserError(
            f"{repo} is not a git repository", hint="run in the repository or pass --repo DIR"
        )
    if not _exists(repo, head):
        raise UserError(f"unknown head revision '{head}'", hint="check the branch, tag or SHA")
    if not _exists(repo, base):
        return ChangeSet(
            [],
            everything=True,
            warnings=[f"base revision '{base}' is unknown here: building every service"],
        )
    shallow = _git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == b"true"
    if shallow:
        raise ShallowCloneError(
            f"this clone is shallow and holds no merge base of {base} and {head}",
            hint="fetch the history back to where they split: git fetch --deepen=200 "
            "(repeat until found) or git fetch --unshallow",
        )
    message = done.stderr.decode(errors="replace").strip().splitlines()
    raise UserError(f"git cannot compare {base}...{head}: {message[-1] if message else 'failed'}")


def rev_parse(repo: Path, *args: str) -> str | None:
    """`git rev-parse ARGS` in `repo`, or None when git cannot answer."""
    done = _git(repo, "rev-parse", *args)
    text = done.stdout.decode(errors="replace").strip()
    return text or None if done.returncode == 0 else None
