"""The plain parameter coercion gives what typer's own (pydantic) coercion gives: the same
value, or the same refusal with the same message, for every parameter it takes over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer._click import core as click_core
from typer._click import exceptions as click_errors
from typer._coercion import build_runtime_param

from shipline.cli.app import app, app_for
from shipline.cli.params import PlainParam, lighten

# What a command line gives: strings from argv, and defaults already of the parameter's type.
SAMPLES: dict[type, list[Any]] = {
    str: ["", "dev", " spaced ", "ünïcode", "--looks-like-an-option", "1.5"],
    int: ["0", "7", "-3", "+4", " 12 ", "1_000", "7.0", "1.5", "abc", "", "1e3", "0x10", "٣",
          "1__0", 5],
    float: ["0", "1.5", "-2.25", "1e3", "inf", "-infinity", "nan", "1_0", "abc", "", " 3 ",
            2.5],
    Path: ["x", "a/b.yaml", ".", "/abs/path", "", " a "],
    bool: [True, False, "true", "False", "yes", "off", "1", "0", "t", "N", "maybe", "2", "",
           " ", "none"],
}  # fmt: skip


def _outcome(runtime: Any, value: Any, param: Any, ctx: Any) -> tuple[str, Any]:
    try:
        return "ok", runtime.coerce(value, param=param, ctx=ctx)
    except click_errors.BadParameter as exc:
        return "refused", exc.message


def _params() -> list[tuple[str, Any, Any]]:
    """Every parameter of the whole command line, with its command's context."""
    found: list[tuple[str, Any, Any]] = []

    def walk(command: Any, path: str) -> None:
        ctx = click_core.Context(command)
        for param in command.params:
            found.append((f"{path} {param.name}", param, ctx))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(lighten(typer.main.get_command(app)), "shipline")
    return found


ALL = _params()
PLAIN = [p for p in ALL if isinstance(p[1]._runtime_param, PlainParam)]


def test_only_ranged_numbers_keep_typers_coercion() -> None:
    kept = {name for name, param, _ in ALL if not isinstance(param._runtime_param, PlainParam)}
    assert kept == {"shipline server port", "shipline server workers", "shipline runs list limit",
                    "shipline audit list limit",
                    "shipline worker poll_seconds", "shipline worker adopt_after"}  # fmt: skip


@pytest.mark.parametrize(("name", "param", "ctx"), PLAIN, ids=[p[0] for p in PLAIN])
def test_same_result_as_typer(name: str, param: Any, ctx: Any) -> None:
    ours = param._runtime_param
    theirs = build_runtime_param(param.type_descriptor)
    samples = [[s] for s in SAMPLES[ours.kind]] if ours.repeated else SAMPLES[ours.kind]
    if ours.repeated:
        samples.append(["a", "b=c"])
    for value in samples:
        assert _outcome(ours, value, param, ctx) == _outcome(theirs, value, param, ctx), (
            f"{name}: {value!r}"
        )


def test_a_command_line_builds_only_its_own_command() -> None:
    assert app_for(["--help"]) is app
    assert app_for([]) is app
    assert app_for(["no-such-command"]) is app  # its error lists every command
    trimmed = typer.main.get_command(app_for(["-c", "x.yaml", "runs", "list"]))
    assert list(trimmed.commands) == ["runs"]  # type: ignore[attr-defined]
    assert "list" in trimmed.commands["runs"].commands  # type: ignore[attr-defined]
    deploy = typer.main.get_command(app_for(["--quiet", "deploy", "--env", "dev"]))
    assert list(deploy.commands) == ["deploy"]  # type: ignore[attr-defined]


def test_a_bad_number_is_refused_with_typers_message(capsys: pytest.CaptureFixture[str]) -> None:
    from shipline.cli.app import main

    assert main(["runs", "list", "--limit", "many"]) == 2
    err = capsys.readouterr().err
    assert "Invalid value for '--limit'" in err and "valid integer" in err
