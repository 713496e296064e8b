"""The command's entry point, and its quick path: a detached `deploy` or `promote` (the command
CI jobs and scripts call most) handed to a worker of the project through its front door before
the command-line framework is loaded, whose import is most of a command's start-up.

Only a command line made of the options it knows, each once and well formed, takes the quick
path, and only when a worker of this project answers; anything else (`--help`, a typo, an
option it does not know, `--set`, a sign-in to a server, no worker) goes the full way, which
parses, checks and reports as always. Both ways send the worker the same request: the command
line's options become the same arguments (tests hold the two parsers to that)."""

from __future__ import annotations

import os
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

# the root's options, accepted before or after the command (as the full way hoists them)
GLOBAL_FLAGS = {"--quiet": "quiet", "-q": "quiet", "--verbose": "verbose", "-v": "verbose",
                "--no-color": "no_color"}  # fmt: skip
GLOBAL_VALUES = {"--config": "config", "-c": "config"}
_FLAGS = {**GLOBAL_FLAGS, "--json": "as_json", "--detach": "detach"}
_BEFORE = {**GLOBAL_FLAGS, "--json": "as_json"}  # `--json` first is hoisted; `--detach` is not


class _Command:
    """One command the quick path takes: its options (name → argument) and their defaults."""

    def __init__(self, values: dict[str, str], flags: dict[str, str], required: set[str]):
        self.values, self.flags, self.required = values, flags, required
        self.defaults: dict[str, Any] = {
            **{name: None for name in values.values()},
            **{name: False for name in flags.values()},
        }


_SELECTION = {"--services": "services", "-s": "services", "--tag": "tag", "-t": "tag",
              "--release": "release", "-r": "release"}  # fmt: skip
COMMANDS = {
    "deploy": _Command(
        {"--env": "env", "-e": "env", "--reason": "reason", **_SELECTION},
        {"--emergency": "emergency", "--force": "force", "--skip-tests": "skip_tests"},
        {"env"},
    ),
    "promote": _Command(
        {"--from": "source", "--to": "targets", **_SELECTION},
        {"--skip-tests": "skip_tests", "--canary": "canary"},
        {"source", "targets"},
    ),
}


def parse(argv: list[str]) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """(command, its arguments for the worker, the invocation's options: config, quiet,
    verbose, no_color, as_json, detach) of a detached `deploy` or `promote`; None for any
    other command line."""
    name, command = "", None
    args: dict[str, Any] = {}
    options: dict[str, Any] = {"config": None, **{key: False for key in _FLAGS.values()}}
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if not arg.startswith("-"):
            if command is not None or arg not in COMMANDS:
                return None  # a second word, or a command the quick path does not take
            name, command = arg, COMMANDS[arg]
            continue
        option, given, value = arg.partition("=")
        flags = {**_FLAGS, **command.flags} if command else _BEFORE
        values = {**GLOBAL_VALUES, **(command.values if command else {})}
        if option in flags:
            key = flags[option]
            target = options if option in _FLAGS else args
            if given or target.get(key):
                return None  # `--detach=yes`, or a flag given twice
            target[key] = True
            continue
        if option not in values:
            return None  # an option it does not know here: the full way names the problem
        if not given:
            if index >= len(argv) or argv[index].startswith("-"):
                return None
            value = argv[index]
            index += 1
        key = values[option]
        target = options if option in GLOBAL_VALUES else args
        if target.get(key) is not None:
            return None  # given twice
        target[key] = value
    if command is None or not options["detach"] or not command.required <= set(args):
        return None
    return name, {**command.defaults, **args}, options


class _Invocation:
    """What the front door's client needs of an invocation: where its configuration is."""

    def __init__(self, config: str | None) -> None:
        self.config = config

    def config_path(self) -> Path:
        from shipline.config.locate import find_config

        return find_config(self.config)


def quick(argv: list[str]) -> int | None:
    """Hand a detached `deploy` or `promote` to a worker of the project and print its answer
    as the full command does: the exit code. None: the full way takes the command line (not
    one the quick path takes, or nobody to hand it to; nothing was asked of anyone)."""
    parsed = parse(argv)
    if parsed is None:
        return None
    name, args, options = parsed
    from shipline.cli import remote
    from shipline.errors import ShiplineError

    invocation = _Invocation(options["config"])
    try:
        if remote.current() is not None:
            return None  # signed in: the server checks the person, the full way
        invocation.config_path()
    except ShiplineError:
        return None  # the full way reports it, as it always has
    from shipline.cli.door import say_detached, submit_at_door
    from shipline.cli.output import Output
    from shipline.domain.masking import Masker

    output = Output(Masker())
    output.no_color = output.no_color or options["no_color"]
    try:
        answer = submit_at_door(invocation, name, args)
        if answer is None:
            return None
        run = int(answer["run"])
        say_detached(output, run, str(answer["phase"]), as_json=options["as_json"],
                     queued=f"run {run} queued")  # fmt: skip
        return 3
    except ShiplineError as exc:
        for line in exc.lines():
            output.error(line)
        return exc.exit_code
    except KeyboardInterrupt:
        output.error("shipline: interrupted")
        return 130
    except Exception as exc:  # the last guard: one line, never a traceback
        return internal_error(output, exc)


def internal_error(output: Any, exc: Exception) -> int:
    """An error nobody foresaw, in one line and a hint (the traceback with SHIPLINE_DEBUG=1)."""
    if os.environ.get("SHIPLINE_DEBUG"):
        import traceback

        output.error(traceback.format_exc())
    output.error(f"shipline: internal error: {type(exc).__name__}: {exc}")
    output.error("  hint: rerun with SHIPLINE_DEBUG=1 and report it")
    return 1


def leave(code: int) -> None:
    """End the process at once: what was printed is flushed, and the interpreter's teardown of
    every module loaded (the store, the models: up to 0.2 s, longer than many commands) is
    skipped. Nothing of shipline's waits on it: a command closes what it writes, and the
    worker stops its engine before it returns."""
    for stream in (sys.stdout, sys.stderr):
        # a reader that went away (`| head`), or a closed stream: nothing more to say
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def run() -> None:
    """Console-script entry point: the quick path when it applies, else the full command."""
    code = quick(sys.argv[1:])
    if code is None:
        from shipline.cli.app import main

        code = main()
    leave(code)
