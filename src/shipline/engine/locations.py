"""Where a project keeps its state: known from the configuration's path and the environment
alone, so that commands that only read the state (or a cache beside it) need not load the
configuration to find it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

STATE_ENV = "SHIPLINE_HOME"
DATABASE_ENV = "SHIPLINE_DATABASE_URL"


def state_dir_of(config_path: Path, environ: Mapping[str, str]) -> Path:
    """The state folder: SHIPLINE_HOME, or `.shipline/` beside the configuration."""
    chosen = environ.get(STATE_ENV)
    return Path(chosen) if chosen else config_path.parent / ".shipline"


def database_url_of(config_path: Path, environ: Mapping[str, str]) -> str:
    """The state store: SHIPLINE_DATABASE_URL, or SQLite under the state folder (made)."""
    chosen = environ.get(DATABASE_ENV)
    if chosen:
        if chosen.startswith("postgresql://"):
            chosen = chosen.replace("postgresql://", "postgresql+psycopg://", 1)
        return chosen
    state_dir = state_dir_of(config_path, environ)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return f"sqlite:///{state_dir / 'state.db'}"
