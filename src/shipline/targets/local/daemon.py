"""The local services' daemon: one process per state folder that runs the local target (replicas,
gateways, supervision) so that the services outlive the worker that deployed them.

A worker killed with `kill -9` leaves the daemon serving every service, canary included; the
next worker connects to it and goes on where its runs were. A graceful stop of the worker stops
the daemon too (the services stop with it, ADR 0004). The daemon answers on `local.sock` in the
state folder (0600): one request a connection, JSON lines (`wire.py`), log lines streamed back
before the result.

Run: python -m shipline.targets.local.daemon --state DIR
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socketserver
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipline.errors import ShiplineError
from shipline.targets.local.target import LocalTarget
from shipline.targets.local.wire import decode, encode, error_message

SOCKET = "local.sock"


def _dispatch(
    target: LocalTarget, method: str, args: dict[str, Any], log: Callable[[str], None]
) -> Any:
    """Run one request against the target."""
    calls: dict[str, Callable[[], Any]] = {
        "ping": os.getpid,
        "plan": lambda: target.plan(args["spec"]),
        "apply": lambda: target.apply(
            args["spec"], cause=args.get("cause", "deploy"), log=log, change=args.get("change")
        ),
        "apply_after": lambda: target.apply_after(
            str(args["after"]),
            args["spec"],
            cause=args.get("cause", "deploy"),
            log=log,
            change=str(args["change"]),
        ),
        "observe": lambda: target.observe(args["environment"], args["service"]),
        "history": lambda: target.history(args["environment"], args["service"]),
        "rollback": lambda: target.rollback(
            args["environment"],
            args["service"],
            int(args["revision"]),
            log=log,
            change=args.get("change"),
        ),
        "scale": lambda: target.scale(
            args["environment"],
            args["service"],
            int(args["replicas"]),
            log=log,
            change=args.get("change"),
        ),
        "restart": lambda: target.restart(
            args["environment"], args["service"], log=log, change=args.get("change")
        ),
        "stop": lambda: target.stop(args["environment"], args.get("service")),
        "health": lambda: target.health(args["environment"], args["service"], args["bounds"]),
        "set_canary": lambda: target.set_canary(
            args["spec"], int(args["weight"]), probe_rps=float(args["probeRps"]), log=log
        ),
        "end_canary": lambda: target.end_canary(
            args["spec"], promote=bool(args["promote"]), log=log
        ),
        "counters": lambda: target.counters(
            args["environment"], args["service"], reset=bool(args.get("reset"))
        ),
        "restore": lambda: target.restore(
            lambda environment, service, _parameters: dict(
                args["secrets"].get(f"{environment}/{service}", {})
            ),
            log=log,
        ),
        "services": lambda: [list(key) for key in target.services()],
        "write_state": target.write_state,
    }
    if method not in calls:
        raise ShiplineError(f"the local daemon has no request '{method}'")
    return calls[method]()


ORPHAN_CHECK_SECONDS = 2.0


def serve(state_dir: Path) -> int:
    """Own `state_dir`'s local services and answer requests until told to shut down."""
    # TargetBusy when another daemon owns the folder; the daemon leads a session of its own
    # (`main`): while a replica starts, it yields the CPU to it
    target = LocalTarget(state_dir, yield_cpu=True)
    path = state_dir / SOCKET
    path.unlink(missing_ok=True)
    stopping = threading.Event()

    class Handler(socketserver.StreamRequestHandler):
        def _send(self, message: dict[str, Any]) -> None:
            try:
                self.wfile.write((json.dumps(message) + "\n").encode())
                self.wfile.flush()
            except OSError:
                pass  # the client left (a killed worker): the work goes on regardless

        def handle(self) -> None:
            request = json.loads(self.rfile.readline() or b"{}")
            method = str(request.get("method"))
            if method == "shutdown":
                stopping.set()
                target.close()
                self._send({"result": True})
                threading.Thread(target=server.shutdown, daemon=True).start()
                return
            try:
                args = decode(request.get("args") or {})
                result = _dispatch(target, method, args, lambda line: self._send({"log": line}))
                self._send({"result": encode(result)})
            except ShiplineError as exc:
                self._send({"error": error_message(exc)})
            except Exception as exc:  # a bug must not kill the services: report, keep serving
                # Only the type and where: a message could quote a variable's (secret) value.
                where = "".join(traceback.format_tb(exc.__traceback__))
                print(f"{type(exc).__name__} in {method}:\n{where}", file=sys.stderr, flush=True)
                self._send(
                    {
                        "error": {
                            "type": "TargetError",
                            "message": f"the local daemon failed: {type(exc).__name__}",
                            "hint": f"see {state_dir / 'local-daemon.log'}",
                        }
                    }
                )

    server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
    server.daemon_threads = True

    def orphaned() -> None:
        """A state folder deleted under the daemon (a temporary project, a removed checkout)
        leaves nobody to ask it to stop: it stops its services and exits."""
        while not stopping.wait(ORPHAN_CHECK_SECONDS):
            if not state_dir.is_dir():
                print(f"{state_dir} is gone: stopping its services", flush=True)
                stopping.set()
                target.close()
                server.shutdown()

    threading.Thread(target=orphaned, daemon=True, name="orphan-check").start()
    os.chmod(path, 0o600)
    print(f"local daemon {os.getpid()} serving {state_dir}", flush=True)
    try:
        server.serve_forever(poll_interval=2)
    finally:
        if not stopping.is_set():
            target.close()
        server.server_close()
        path.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the daemon process."""
    parser = argparse.ArgumentParser(prog="shipline-local-daemon")
    parser.add_argument("--state", required=True, type=Path)
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):  # already its session's leader
        os.setsid()  # a session, so a scheduling group, of its own (`Yielding`)
    try:
        return serve(args.state)
    except ShiplineError as exc:
        print(exc.message, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
