"""`shipline logs`: what a service's replicas wrote, read through its target's view (the CLI
knows no target's file layout)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from shipline.domain.ports import ServiceLogs
from shipline.engine.pipelines import find_environment, pick_services
from shipline.engine.wiring import require_target, view_target
from shipline.engine.workspace import Workspace
from shipline.errors import UserError

KEEP = 4  # replicas' logs shown: the newest


def _sources(ws: Workspace, env: str, service: str) -> tuple[ServiceLogs, str, str]:
    environment = find_environment(ws.config, env)
    names = pick_services(ws.config, service)
    if len(names) != 1:
        raise UserError("--service takes one service name")
    kind = require_target(ws.config, environment.name)
    view = view_target(kind, ws.state_dir, ws.target_settings(environment.name))
    if not isinstance(view, ServiceLogs):
        raise UserError(f"target type '{kind}' keeps no service logs that shipline can read")
    return view, environment.name, names[0]


def tail(ws: Workspace, env: str, service: str, lines: int) -> list[tuple[str, str]]:
    """(replica, line) of the last `lines` lines of the newest replicas' logs."""
    if lines < 0:
        raise UserError("--lines must be 0 or more")
    view, environment, name = _sources(ws, env, service)
    files = view.log_files(environment, name)
    if not files:
        raise UserError(
            f"no logs for {name} in {environment}", hint="deploy it to that environment first"
        )
    found: list[tuple[str, str]] = []
    for path in files[-KEEP:]:
        found += [
            (path.stem, line)
            for line in path.read_text(errors="replace").splitlines()[-lines:]
            if lines
        ]
    return found


def follow(ws: Workspace, env: str, service: str, pause: float = 0.5) -> Iterator[tuple[str, str]]:
    """New lines as the replicas write them (forever; the caller stops)."""
    view, environment, name = _sources(ws, env, service)
    positions: dict[Path, int] = {p: p.stat().st_size for p in view.log_files(environment, name)}
    while True:
        time.sleep(pause)
        for path in view.log_files(environment, name):
            size = path.stat().st_size
            if size > positions.get(path, 0):
                with open(path, errors="replace") as handle:
                    handle.seek(positions.get(path, 0))
                    for line in handle.read().splitlines():
                        yield path.stem, line
                positions[path] = size
