"""Assemble the engine's parts for a workspace: the run service (CLI) and the worker runtime."""

from __future__ import annotations

from collections.abc import Sequence

from shipline.domain.events import EventKind
from shipline.domain.ports import Notifier
from shipline.engine.durable import EngineClient
from shipline.engine.notifications import build_notifiers
from shipline.engine.runs import RunService
from shipline.engine.runtime import Runtime, system_database_url
from shipline.engine.wiring import SqlStateStore
from shipline.engine.workspace import Workspace


def run_service(ws: Workspace) -> RunService:
    """The runs of `ws`'s project, with a client to queue and message them."""
    store = SqlStateStore.connect(ws.database_url)
    client = EngineClient(system_database_url(ws.database_url, ws.state_dir))
    return RunService(store, client, ws.audit)


def worker_runtime(ws: Workspace) -> tuple[Runtime, str]:
    """The runtime a worker installs for `ws`, and DBOS's system database URL."""
    store = SqlStateStore.connect(ws.database_url)

    def notifiers(kind: EventKind) -> Sequence[Notifier]:
        found, problems = build_notifiers(ws.config, ws.store, kind)
        for problem in problems:
            store_log(problem)
        return found

    def store_log(problem: str) -> None:
        import logging

        logging.getLogger("shipline.notify").warning("%s", problem)

    runtime = Runtime(
        store=store, audit=ws.audit, masker=ws.masker, notifiers=notifiers, workspace=ws
    )
    return runtime, system_database_url(ws.database_url, ws.state_dir)
