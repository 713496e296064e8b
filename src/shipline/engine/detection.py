"""Which services a change touches (`ci detect`, `ci build --services changed`).

Change detection runs in every CI job, often on every push, and needs of the configuration
only its path rules. Those are kept beside the state (`cache/path-rules.json`) with a digest of
every configuration file they came from: while no file changed, detection reads the rules and
never loads (or validates) the whole configuration; when one did, the configuration is loaded
and checked in full, as any command does, and the rules saved again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shipline import __version__
from shipline.domain.changes import PathRules, affected
from shipline.engine.locations import state_dir_of
from shipline.engine.wiring import changed_paths

RULES_FORMAT = 1  # raise when PathRules' saved shape or meaning changes


@dataclass(frozen=True)
class Detection:
    """The services a change touches, and why."""

    services: dict[str, list[str]]
    build_all: bool
    changed_paths: int
    warnings: list[str] = field(default_factory=list)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_file(state_dir: Path) -> Path:
    return state_dir / "cache" / "path-rules.json"


def _saved_rules(config_path: Path, state_dir: Path) -> PathRules | None:
    try:
        saved = json.loads(_cache_file(state_dir).read_text())
        key = saved["key"]
        if key != [__version__, RULES_FORMAT, str(config_path.resolve())]:
            return None
        if any(_digest(Path(name)) != digest for name, digest in saved["files"].items()):
            return None
        return PathRules.from_json(saved["rules"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, unreadable or from another version: load the configuration


def path_rules(config_path: Path, state_dir: Path) -> PathRules:
    """The path rules of the configuration at `config_path`: saved ones while none of its
    files changed, else from the whole configuration, loaded and checked (and then saved)."""
    found = _saved_rules(config_path, state_dir)
    if found is not None:
        return found
    from shipline.engine.wiring import load_config_files

    config, files = load_config_files(config_path)
    rules = PathRules.of(config, config.ci.build_all_paths)
    saved = {
        "key": [__version__, RULES_FORMAT, str(config_path.resolve())],
        "files": {str(f): _digest(f) for f in files},
        "rules": rules.to_json(),
    }
    target = _cache_file(state_dir)
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        scratch = target.with_name(f".{target.name}.{os.getpid()}")
        scratch.write_text(json.dumps(saved))
        os.replace(scratch, target)
    except OSError:
        pass  # a read-only state folder: detection still works, only slower next time
    return rules


def detect_with(rules: PathRules, repo: Path, base: str, head: str) -> Detection:
    """Services under `rules` changed on `head` since it left `base` (merge-base semantics)."""
    changes = changed_paths(repo, base, head)
    if changes.everything:
        services = {name: ["base unknown"] for name, _, _, _ in rules.services}
        return Detection(services, True, len(changes.paths), list(changes.warnings))
    found = affected(rules, changes.paths)
    return Detection(found.services, found.build_all, len(changes.paths), list(changes.warnings))


def detect_at(
    config_path: Path, environ: Mapping[str, str], base: str, head: str, repo: Path | None = None
) -> Detection:
    """`ci detect` for the configuration at `config_path` (its repository unless `repo`)."""
    rules = path_rules(config_path, state_dir_of(config_path, environ))
    return detect_with(rules, repo or config_path.parent, base, head)
