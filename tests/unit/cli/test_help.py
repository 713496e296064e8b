"""Every command's help carries a short example; completion scripts can be installed."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from shipline.cli.app import app, main


def _commands(command: Any, path: list[str]) -> list[tuple[str, Any]]:
    if hasattr(command, "commands"):
        return [found for name, sub in command.commands.items()
                for found in _commands(sub, [*path, name])]  # fmt: skip
    return [(" ".join(path), command)]


def test_every_command_has_an_example() -> None:
    commands = _commands(typer.main.get_command(app), [])
    assert len(commands) > 40
    assert [name for name, c in commands if "Example: shipline" not in (c.help or "")] == []


def test_shell_completion_is_offered(capsys: Any) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["--show-completion", "bash"])
    assert ended.value.code in (0, None)
    assert "_SHIPLINE_COMPLETE" in capsys.readouterr().out
