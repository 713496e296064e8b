"""Per-invocation CLI state shared by every command module."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shipline.cli.output import Output

if TYPE_CHECKING:
    from shipline.engine.workspace import Workspace

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class State:
    """What one invocation knows: its printer and, once loaded, its workspace."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.config: str | None = None
        self.quiet = False  # following a run: only its result
        self.verbose = False  # following a run: its step logs too
        self._workspace: Workspace | None = None

    def config_path(self) -> Path:
        """The configuration file this invocation uses (not loaded)."""
        from shipline.config.locate import find_config

        return find_config(self.config)

    def workspace(self) -> Workspace:
        """The project, loaded on first use."""
        if self._workspace is None:
            from shipline.config.locate import find_config
            from shipline.engine.workspace import Workspace

            path = find_config(self.config)
            self._workspace = Workspace.open(path, masker=self.output.masker)
        return self._workspace


def state_of(ctx: typer.Context) -> State:
    """The invocation's State."""
    state: State = ctx.ensure_object(State)
    return state
