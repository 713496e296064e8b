"""`shipline init`: find the services of a git repository (folders with a Dockerfile or a build
file), guess their stacks, ports and health paths, find shared folders, and write a commented
`shipline.yaml` that validates and detects changes at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shipline.domain.scaffold import (
    DEFAULTS,
    GO_ENTRY,
    MARKERS,
    PYTHON_ENTRIES,
    SHARED_NAMES,
    Guess,
    guess_service,
    render_config,
)
from shipline.engine.wiring import rev_parse
from shipline.errors import UserError

SKIP = {
    "node_modules",
    "vendor",
    "target",
    "build",
    "dist",
    "deps",
    "_build",
    "venv",
    "__pycache__",
}
READ = (*MARKERS, "application.properties", "application.yml", "Procfile", *PYTHON_ENTRIES,
        GO_ENTRY)  # fmt: skip
DEPTH = 4

Ask = Callable[[str, str], str]  # (question, default) -> answer


def _read(folder: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in READ:
        path = folder / name
        if not path.is_file():
            path = folder / "src" / "main" / "resources" / name  # Spring's settings
        if path.is_file() and path.stat().st_size < 1_000_000:
            found[name] = path.read_text(encoding="utf-8", errors="replace")
    return found


def _folders(root: Path) -> list[Path]:
    """Service folders: the shallowest folders with a marker, below the root."""
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
            if child.name.startswith(".") or child.name in SKIP:
                continue
            if any((child / marker).is_file() for marker in MARKERS):
                found.append(child)
            elif depth < DEPTH:
                walk(child, depth + 1)

    walk(root, 1)
    return found


def detect_services(root: Path) -> tuple[list[Guess], list[str]]:
    """The services found under `root` (the root itself when it is the only one) and the
    shared folders at the top (`protos/`, `shared/`)."""
    folders = _folders(root)
    if not folders and any((root / marker).is_file() for marker in MARKERS):
        return [guess_service("", _read(root), root.name)], []
    guesses = [guess_service(str(f.relative_to(root)), _read(f), root.name) for f in folders]
    seen: dict[str, int] = {}
    for guess in guesses:  # two folders called `api` become api and api-2
        seen[guess.name] = seen.get(guess.name, 0) + 1
        if seen[guess.name] > 1:
            guess.name = f"{guess.name}-{seen[guess.name]}"[:63]
    shared = sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and p.name.lower() in SHARED_NAMES and p not in folders
    )
    return guesses, shared


def init_project(root: Path, *, force: bool, ask: Ask | None) -> tuple[Path, list[Guess]]:
    """Write `shipline.yaml` at the top of the git repository holding `root`; with `ask`,
    confirm each uncertain guess (stack, port, health path)."""
    top = rev_parse(root, "--show-toplevel")
    if top is None:
        raise UserError(f"{root} is not in a git repository", hint="run `git init` first")
    repo = Path(top)
    target = repo / "shipline.yaml"
    if target.exists() and not force:
        raise UserError(f"{target} exists", hint="edit it, or pass --force to write it anew")
    guesses, shared = detect_services(repo)
    if not guesses:
        raise UserError(
            "no service found: no folder has a Dockerfile, pom.xml, build.gradle, package.json,"
            " go.mod, mix.exs, pyproject.toml or requirements.txt",
            hint="add one, or write shipline.yaml by hand (see `shipline schema`)",
        )
    if ask is not None:
        for guess in guesses:
            _confirm(guess, ask)
    target.write_text(render_config(repo.name, guesses, shared), encoding="utf-8")
    return target, guesses


def _confirm(guess: Guess, ask: Ask) -> None:
    where = guess.folder or "."
    if "stack" in guess.unsure:
        chosen = ask(f"{where}: stack ({', '.join(DEFAULTS)})", guess.stack).strip()
        if chosen in DEFAULTS:
            guess.stack = chosen
            guess.port, guess.health_path = DEFAULTS[chosen]
    if "port" in guess.unsure:
        answer = ask(f"{where}: port", str(guess.port)).strip()
        if answer.isdigit() and 1 <= int(answer) <= 65535:
            guess.port = int(answer)
    if "health path" in guess.unsure:
        answer = ask(f"{where}: health path", guess.health_path).strip()
        if answer.startswith("/"):
            guess.health_path = answer
    guess.unsure = []
