"""Assemble the engine's parts for a workspace: the run service (CLI) and the worker runtime."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipline.domain.events import EventKind
from shipline.domain.ports import Notifier
from shipline.engine.notifications import build_notifiers
from shipline.engine.runs import RunService
from shipline.engine.runtime import RUN_QUEUE, Runtime, local_queue, system_database_url
from shipline.engine.wiring import SqlStateStore
from shipline.engine.workspace import Workspace

if TYPE_CHECKING:
    from shipline.engine.accounts import Accounts


class _StoreQueue:
    """How the CLI and the server reach the durable engine: requests in the state store's
    outbox, carried out by a worker, whose doorbell is rung so that it acts at once. No engine
    client is made (importing and connecting one cost a command most of a second)."""

    def __init__(self, store: SqlStateStore, state_dir: Path) -> None:
        self._store = store
        self._state_dir = state_dir

    def enqueue(self, workflow_id: str, run_id: int) -> None:
        self._store.post("enqueue", workflow_id, run_id)
        self.ring()

    def send(self, workflow_id: str, message: dict[str, Any], topic: str) -> None:
        self._store.post("send", workflow_id, None, topic, message)
        self.ring()

    def ring(self) -> None:
        from shipline.doorbell import ring

        ring(self._state_dir)


def run_service(ws: Workspace) -> RunService:
    """The runs of `ws`'s project, with a client to queue and message them."""
    store = SqlStateStore.connect(ws.database_url)
    return RunService(
        store, _StoreQueue(store, ws.state_dir), ws.audit, local_queue=local_queue(ws.state_dir),
        state_dir=ws.state_dir,
    )  # fmt: skip


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


def worker_queues(ws: Workspace) -> list[str]:
    """The durable queues a worker of `ws` serves: any worker's, and its machine's local one
    when the project deploys anything to a `local` target (each queue costs a poll)."""
    has_local = any(target.type == "local" for target in ws.config.targets.values())
    return [RUN_QUEUE, *([local_queue(ws.state_dir)] if has_local else [])]


def accounts(ws: Workspace) -> Accounts:
    """The people of `ws`'s project, on its state store, audited in its trail."""
    from shipline.engine.accounts import Accounts
    from shipline.engine.wiring import SqlAccounts

    return Accounts(SqlAccounts(SqlStateStore.connect(ws.database_url)), ws.audit)
