"""The quick path takes only the command lines it understands, and asks the worker exactly what
the full command would: both parsers are held to the same request here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from shipline.cli import door
from shipline.cli.app import main
from shipline.cli.quick import parse, quick

TAKEN = [
    ["deploy", "--env", "qa", "--services", "api", "--tag", "1.0.0", "--detach"],
    ["deploy", "-e", "qa", "-s", "api,web", "-t", "1.0.0", "--detach", "--json"],
    ["--json", "deploy", "--env=qa", "--release=2026.11.1", "--detach", "--force"],
    ["-q", "deploy", "--detach", "--env", "live", "--tag", "2.0.0", "--emergency",
     "--reason", "outage 42", "--skip-tests"],
    ["deploy", "--env", "qa", "--tag", "1.0.0", "--detach", "--no-color", "-c", "{config}"],
    ["--config", "{config}", "deploy", "--env", "qa", "--services", "all", "--detach"],
    ["promote", "--from", "dev", "--to", "qa,staging", "--release", "r1", "--detach"],
    ["promote", "--from=dev", "--to=all", "-s", "api", "-t", "1.2.3", "--canary",
     "--skip-tests", "--detach", "--json"],
    ["deploy", "--env", "qa", "--tag", "1.0.0", "--json"],  # waited for: the result printed
    ["-q", "deploy", "--env", "qa", "--tag", "1.0.1"],
    ["promote", "--from", "dev", "--to", "qa", "--tag", "1.0.0", "--quiet"],
    ["promote", "--from", "staging", "--to", "live", "-s", "api", "-t", "1.0.0", "--emergency",
     "--reason", "INC-9", "--detach"],
    ["promote", "--from", "dev", "--to", "qa", "--tag", "1.0.0", "--json"],
    ["approve", "12", "--as", "Quinn"],
    ["-q", "approve", "--as=quinn", "--stage", "deploy", "--comment", "CAB-7", "12"],
    ["reject", "3", "--as", "ann", "--comment", "not today"],
    ["runs", "cancel", "12"],
    ["runs", "cancel", "--reason", "wrong tag", "12", "-c", "{config}"],
]  # fmt: skip

DECLINED = [
    ["deploy", "--env", "qa", "--tag", "1.0.0"],  # followed live: the full way's live view
    ["promote", "--from", "dev", "--to", "qa", "--tag", "1.0.0", "-v"],
    ["deploy", "--env", "qa", "--tag", "1.0.0", "--detach", "--set", "X=1"],  # --set
    ["deploy", "--tag", "1.0.0", "--detach"],  # --env missing: the full way says so
    ["deploy", "--env", "qa", "--env", "dev", "--detach"],  # given twice
    ["deploy", "--env", "qa", "--detach", "--detach"],
    ["deploy", "--env", "--detach"],  # a value missing
    ["deploy", "--env", "qa", "--detach=yes"],
    ["deploy", "--env", "qa", "--detach", "--tga", "1.0.0"],  # a typo
    ["deploy", "--env", "qa", "--detach", "--canary"],  # promote's option
    ["deploy", "--env", "qa", "--detach", "extra"],  # an argument
    ["deploy", "--env", "qa", "--detach", "--help"],
    ["deploy", "-eqa", "--detach"],
    ["--detach", "deploy", "--env", "qa"],  # the root has no --detach
    ["--env", "qa", "deploy", "--detach"],
    ["status", "--env", "qa", "--detach"],
    ["runs", "list"],
    ["promote", "--from", "dev", "--detach"],  # --to missing
    ["promote", "--from", "dev", "--to", "qa", "--tag", "1.0.0", "--json", "--dry-run"],  # queues nothing
    ["--version"],
    [],
    ["approve", "12"],  # who votes: single-user mode needs --as (the full way says so)
    ["approve", "12", "--as", ""],
    ["approve", "--as", "ann"],  # no run
    ["approve", "twelve", "--as", "ann"],
    ["approve", "12", "13", "--as", "ann"],
    ["approve", "12", "--as", "ann", "--json"],  # approve has no --json
    ["--json", "approve", "12", "--as", "ann"],
    ["approve", "12", "--as", "ann", "--detach"],
    ["runs", "-q", "cancel", "12"],
    ["runs", "cancel"],
    ["runs", "show", "12"],
    ["cancel", "12"],
]  # fmt: skip


@pytest.mark.parametrize("argv", DECLINED, ids=" ".join)
def test_command_lines_it_does_not_understand_go_the_full_way(argv: list[str]) -> None:
    assert parse(argv) is None


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "shipline.yaml"
    config.write_text("project: p\n")  # never read: the worker would load it
    return config


@pytest.mark.parametrize("argv", TAKEN, ids=" ".join)
def test_the_quick_path_asks_the_worker_what_the_full_command_asks(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    config = _config(tmp_path)
    argv = [a.replace("{config}", str(config)) for a in argv]
    monkeypatch.setenv("SHIPLINE_CONFIG", str(config))
    monkeypatch.setenv("SHIPLINE_LOGIN_FILE", str(tmp_path / "no-login.json"))

    asked: list[tuple[str, dict[str, Any], str | None]] = []
    monkeypatch.setenv("SHIPLINE_HOME", str(tmp_path / "state"))
    ended = {"id": 7, "pipeline": "deploy", "phase": "failed", "reason": "verify: api is down"}
    answers = {"deploy": {"run": 7, "phase": "pending"}, "promote": {"run": 7, "phase": "pending"},
               "vote": {"stage": "deploy", "waitingOn": ["cab"]}, "cancel": {"run": 7}}  # fmt: skip

    def worker(state: Any, op: str, args: dict[str, Any], actor: str | None = None) -> Any:
        assert state.config_path() == config
        if op == "show":  # a waited-for run: its phase, then its document
            return {"phase": ended["phase"]} if args.get("brief") else {"details": ended}
        asked.append((op, args, actor))
        return answers[op]

    monkeypatch.setattr(door, "submit_at_door", worker)
    code = quick(argv)
    said = capsys.readouterr()
    assert main(argv) == code and code in (0, 1, 3)
    assert said == capsys.readouterr() and (said.out or said.err)
    assert len(asked) == 2 and asked[0] == asked[1], asked
    parsed = parse(argv)
    assert parsed is not None and parsed[0].op == asked[0][0]


def test_without_a_worker_the_full_way_takes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPLINE_CONFIG", str(_config(tmp_path)))
    monkeypatch.setenv("SHIPLINE_LOGIN_FILE", str(tmp_path / "no-login.json"))
    monkeypatch.setattr(door, "submit_at_door", lambda *a, **k: None)
    assert quick(["deploy", "--env", "qa", "--tag", "1.0.0", "--detach"]) is None


def test_signed_in_to_a_server_the_full_way_takes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    login = tmp_path / "login.json"
    login.write_text('{"server": "http://127.0.0.1:9", "token": "t"}')
    monkeypatch.setenv("SHIPLINE_CONFIG", str(_config(tmp_path)))
    monkeypatch.setenv("SHIPLINE_LOGIN_FILE", str(login))

    def worker(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the worker was asked while signed in to a server")

    monkeypatch.setattr(door, "submit_at_door", worker)
    assert quick(["deploy", "--env", "qa", "--tag", "1.0.0", "--detach"]) is None


def test_a_refusal_prints_as_the_full_command_prints_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SHIPLINE_CONFIG", str(_config(tmp_path)))
    monkeypatch.setenv("SHIPLINE_LOGIN_FILE", str(tmp_path / "no-login.json"))

    def refuses(*args: Any, **kwargs: Any) -> Any:
        raise door._Refused(["unknown service(s): nope", "  hint: see `shipline services list`"], 2)

    monkeypatch.setattr(door, "submit_at_door", refuses)
    argv = ["deploy", "--env", "qa", "--services", "nope", "--detach"]
    assert quick(argv) == 2
    quick_err = capsys.readouterr().err
    assert main(argv) == 2
    said = "unknown service(s): nope\n  hint: see `shipline services list`\n"
    assert quick_err == capsys.readouterr().err == said


def test_the_entry_point_does_not_load_the_framework_for_what_it_declines() -> None:
    # the quick module itself stays light: the full command's framework loads only when needed
    assert "typer" not in {m.split(".")[0] for m in _imports_of("shipline.cli.quick")}


def _imports_of(module: str) -> set[str]:
    import subprocess

    probe = f"import sys; import {module}; print(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return set(done.stdout.split())


def test_a_worker_gone_after_taking_the_run_is_never_asked_again_to_submit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the run was recorded; the wait goes on from the store, as the full command's does
    monkeypatch.setenv("SHIPLINE_CONFIG", str(_config(tmp_path)))
    monkeypatch.setenv("SHIPLINE_LOGIN_FILE", str(tmp_path / "no-login.json"))
    monkeypatch.setenv("SHIPLINE_HOME", str(tmp_path / "state"))
    asked: list[str] = []

    def worker(state: Any, op: str, args: dict[str, Any], actor: str | None = None) -> Any:
        asked.append(op)
        return {"run": 7, "phase": "pending"} if op == "deploy" else None

    monkeypatch.setattr(door, "submit_at_door", worker)
    watched: list[int] = []
    from shipline.cli import runs

    def from_store(state: Any, ws: Any, run_id: int, *, detach: bool, as_json: bool) -> None:
        watched.append(run_id)

    monkeypatch.setattr(runs, "watch_started", from_store)
    monkeypatch.setattr("shipline.cli.context.State.workspace", lambda self: None)
    assert quick(["deploy", "--env", "qa", "--tag", "1.0.0", "--json"]) == 0
    assert asked == ["deploy", "show"] and watched == [7]
