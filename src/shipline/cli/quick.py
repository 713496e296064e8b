"""The command's entry point, and its quick path: a `deploy` or `promote` that is detached or
waited for with --json or --quiet (what CI jobs and scripts call), a single-user `approve` or
`reject`, and `runs cancel`, handed to a worker of the project through its front door before
the command-line framework is loaded, whose import is most of a command's start-up.

Only a command line made of the options it knows, each once and well formed, takes the quick
path, and only when a worker of this project answers; anything else (`--help`, a typo, an
option it does not know, `--set`, a vote without `--as`, a sign-in to a server, no worker)
goes the full way, which parses, checks and reports as always. Both ways send the worker the
same request: the command line's options become the same arguments (tests hold the two
parsers to that). See ADR 0018."""

from __future__ import annotations

import os
import sys
from contextlib import suppress
from pathlib import Path

TYPE_CHECKING = False  # typing is not imported at run time (the quick path loads this)
if TYPE_CHECKING:
    from typing import Any

# the root's options, accepted before or after the command (as the full way hoists them)
GLOBAL_FLAGS = {"--quiet": "quiet", "-q": "quiet", "--verbose": "verbose", "-v": "verbose",
                "--no-color": "no_color"}  # fmt: skip
GLOBAL_VALUES = {"--config": "config", "-c": "config"}
_SUBMITTING = {"--json": "as_json", "--detach": "detach"}  # the invocation's, not the worker's


class _Command:
    """One command the quick path takes: the front door's operation it asks for, its options
    (name → argument), the arguments it cannot do without, and its one positional argument
    (a run's number), if it has one."""

    def __init__(
        self, op: str, values: dict[str, str], flags: dict[str, str], required: set[str],
        run: bool = False, fixed: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        self.op, self.values, self.flags, self.required, self.run = op, values, flags, required, run
        self.defaults: dict[str, Any] = {
            **{name: None for name in values.values() if name != "as"},
            **{name: False for name in flags.values() if name not in _SUBMITTING.values()},
            **(fixed or {}),
        }


_SELECTION = {"--services": "services", "-s": "services", "--tag": "tag", "-t": "tag",
              "--release": "release", "-r": "release"}  # fmt: skip
_BALLOT = {"--as": "as", "--stage": "stage", "--comment": "comment"}
COMMANDS = {
    ("deploy",): _Command(
        "deploy",
        {"--env": "env", "-e": "env", "--reason": "reason", **_SELECTION},
        {
            "--emergency": "emergency",
            "--force": "force",
            "--skip-tests": "skip_tests",
            **_SUBMITTING,
        },
        {"env"},
    ),
    ("promote",): _Command(
        "promote",
        {"--from": "source", "--to": "targets", "--reason": "reason", **_SELECTION},
        {
            "--skip-tests": "skip_tests",
            "--canary": "canary",
            "--emergency": "emergency",
            **_SUBMITTING,
        },
        {"source", "targets"},
    ),
    # single-user votes name the voter (`--as`); signed in to a server, the full way votes
    ("approve",): _Command("vote", _BALLOT, {}, {"as"}, run=True, fixed={"approve": True}),
    ("reject",): _Command("vote", _BALLOT, {}, {"as"}, run=True, fixed={"approve": False}),
    ("runs", "cancel"): _Command("cancel", {"--reason": "reason"}, {}, set(), run=True),
}
_WORDS = {words[: n + 1] for words in COMMANDS for n in range(len(words))}


def parse(argv: list[str]) -> tuple[_Command, dict[str, Any], dict[str, Any]] | None:
    """(the command, its arguments for the worker, the invocation's options: config, quiet,
    verbose, no_color, as_json, detach, as) of a command line the quick path takes; None for
    any other."""
    words: tuple[str, ...] = ()
    command: _Command | None = None
    args: dict[str, Any] = {}
    options: dict[str, Any] = {"config": None}
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if not arg.startswith("-"):
            if command is not None and command.run and "run" not in args and arg.isdigit():
                args["run"] = int(arg)
            elif command is None and (*words, arg) in _WORDS:
                words = (*words, arg)
                command = COMMANDS.get(words)
            else:
                return None  # a word it does not expect: the full way names the problem
            continue
        if words and command is None:
            return None  # an option inside a command's name (`runs -q cancel`)
        option, given, value = arg.partition("=")
        flags = {**GLOBAL_FLAGS, **(command.flags if command else {"--json": "as_json"})}
        if option in flags:
            key = flags[option]
            target = args if command and key in command.defaults else options
            if given or target.get(key):
                return None  # `--detach=yes`, or a flag given twice
            target[key] = True
            continue
        values = {**GLOBAL_VALUES, **(command.values if command else {})}
        if option not in values:
            return None  # an option it does not know here: the full way names the problem
        if not given:
            if index >= len(argv) or argv[index].startswith("-"):
                return None
            value = argv[index]
            index += 1
        key = values[option]
        target = args if command and key in command.defaults else options
        if target.get(key) is not None:
            return None  # given twice
        target[key] = value
    if command is None or (command.run and "run" not in args):
        return None
    known = {**args, **options}
    if not command.required <= {key for key, value in known.items() if value}:
        return None
    if options.get("as_json") and "--json" not in command.flags:
        return None  # `shipline --json approve 1`: the full way says approve has no --json
    if "--detach" in command.flags and not (
        options.get("detach") or options.get("as_json") or options.get("quiet")
    ):
        return None  # followed live: the full way's live view
    return command, {**command.defaults, **args}, options


class _Invocation:
    """What the front door's client needs of an invocation: where its configuration is."""

    def __init__(self, config: str | None) -> None:
        self.config = config

    def config_path(self) -> Path:
        from shipline.config.locate import find_config

        return find_config(self.config)


def quick(argv: list[str]) -> int | None:
    """Hand a command line the quick path takes to a worker of the project and print its
    answer as the full command does: the exit code. None: the full way takes the command line
    (not one the quick path takes, or nobody to hand it to; nothing was asked of anyone)."""
    parsed = parse(argv)
    if parsed is None:
        return None
    command, args, options = parsed
    from shipline.cli import remote
    from shipline.errors import ShiplineError

    invocation = _Invocation(options["config"])
    try:
        if remote.current() is not None:
            return None  # signed in: the server checks the person, the full way
        invocation.config_path()
    except ShiplineError:
        return None  # the full way reports it, as it always has
    from shipline.cli import door
    from shipline.cli.output import Output
    from shipline.domain.masking import Masker

    output = Output(Masker())
    output.no_color = output.no_color or bool(options.get("no_color"))
    try:
        actor = None
        if command.op == "vote":
            from shipline.engine.identity import current_user

            actor = current_user(options["as"], os.environ)
        elif command.op == "cancel":
            actor = remote.acting_user()
        answer = door.submit_at_door(invocation, command.op, args, actor)
        if answer is None:
            return None
        if command.op == "vote":
            waiting = [str(w) for w in answer["waitingOn"]]
            door.say_voted(output, args["run"], str(answer["stage"]), str(actor), waiting,
                           approve=args["approve"])  # fmt: skip
            return 0
        if command.op == "cancel":
            door.say_cancel_requested(output, args["run"])
            return 0
        run, as_json = int(answer["run"]), bool(options.get("as_json"))
        if options.get("detach"):
            door.say_detached(output, run, str(answer["phase"]), as_json=as_json,
                              queued=f"run {run} queued")  # fmt: skip
            return 3
        code = door.watch_at_door(invocation, output, run, as_json=as_json)
        return _watch_from_store(output, options, run) if code is None else code
    except (KeyboardInterrupt, Exception) as exc:  # never a traceback
        return failed(output, exc)


def _watch_from_store(output: Any, options: dict[str, Any], run: int) -> int:
    """Wait for run `run` as the full command does when the worker that took it stopped
    answering: from the store (the run is recorded; it is never submitted again)."""
    import typer

    from shipline.cli.context import State
    from shipline.cli.runs import watch_started

    state = State(output)
    state.config, state.quiet = options["config"], bool(options.get("quiet"))
    try:
        watch_started(state, state.workspace(), run, detach=False,
                      as_json=bool(options.get("as_json")))  # fmt: skip
    except typer.Exit as exc:
        return int(exc.exit_code)
    return 0


def failed(output: Any, exc: BaseException) -> int:
    """A command that ended in an error, as the user reads it: shipline's own errors as their
    lines, Ctrl-C as one line, anything else as `internal_error`; the exit code."""
    from shipline.errors import ShiplineError

    if isinstance(exc, ShiplineError):
        for line in exc.lines():
            output.error(line)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        output.error("shipline: interrupted")
        return 130
    return internal_error(output, exc)


def internal_error(output: Any, exc: BaseException) -> int:
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
