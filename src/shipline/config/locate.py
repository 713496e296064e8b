"""Where the configuration is: found without reading it (a command that only needs its
location, or a cache keyed on it, does not pay for the loader)."""

from __future__ import annotations

import os
from pathlib import Path

from shipline.errors import NotFoundError

__all__ = ["CONFIG_NAME", "find_config"]

CONFIG_NAME = "shipline.yaml"


def find_config(explicit: str | None = None, start: Path | None = None) -> Path:
    """The configuration to use: explicit path, then SHIPLINE_CONFIG, then walking up for one."""
    chosen = explicit or os.environ.get("SHIPLINE_CONFIG")
    if chosen:
        path = Path(chosen)
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise NotFoundError(
                f"configuration not found: {chosen}", hint="pass --config PATH to a shipline.yaml"
            )
        return path
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise NotFoundError(
        f"no {CONFIG_NAME} here or in any parent folder",
        hint="run in a project, or pass --config PATH (or set SHIPLINE_CONFIG)",
    )
