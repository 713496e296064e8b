"""Shared helpers: run the CLI in-process and find the reference configuration."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipline.cli.app import main

ROOT = Path(__file__).resolve().parents[1]
QUIKAPP = ROOT / "examples" / "quikapp" / "shipline.yaml"


@dataclass
class Result:
    """What one CLI invocation did."""

    code: int
    out: str
    err: str


CLI = Callable[..., Result]


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh state folder (SHIPLINE_HOME) so tests never write into the examples."""
    home = tmp_path / "state"
    monkeypatch.setenv("SHIPLINE_HOME", str(home))
    monkeypatch.delenv("SHIPLINE_CONFIG", raising=False)
    monkeypatch.delenv("SHIPLINE_SECRET_KEY", raising=False)
    monkeypatch.setenv("SHIPLINE_USER", "tester")
    return home


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, state_home: Path
) -> CLI:
    """Run `shipline ARGS` in-process; `stdin=` feeds standard input."""

    def run(*args: str, stdin: str | None = None) -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
