"""Assemble the engine's parts for a workspace: the run service (CLI) and the worker runtime."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shipline.domain.events import EventKind
from shipline.domain.ports import Notifier
from shipline.engine.notifications import build_notifiers
from shipline.engine.runs import RunService
from shipline.engine.runtime import Runtime, system_database_url
from shipline.engine.wiring import SqlStateStore
from shipline.engine.workspace import Workspace

if TYPE_CHECKING:
    from shipline.engine.accounts import Accounts


class _LazyClient:
    """The durable engine's client, made on first use: commands that only read runs never
    import the engine (a third of a command's start-up)."""

    def __init__(self, system_url: str) -> None:
        self._url = system_url
        self._client: Any = None

    def _get(self) -> Any:
        if self._client is None:
            from shipline.engine.durable import EngineClient

            self._client = EngineClient(self._url)
        return self._client

    def enqueue(self, workflow_id: str, run_id: int) -> None:
        self._get().enqueue(workflow_id, run_id)

    def send(self, workflow_id: str, message: dict[str, Any], topic: str) -> None:
        self._get().send(workflow_id, message, topic)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def run_service(ws: Workspace) -> RunService:
    """The runs of `ws`'s project, with a client to queue and message them."""
    store = SqlStateStore.connect(ws.database_url)
    client = _LazyClient(system_database_url(ws.database_url, ws.state_dir))
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


def accounts(ws: Workspace) -> Accounts:
    """The people of `ws`'s project, on its state store, audited in its trail."""
    from shipline.engine.accounts import Accounts
    from shipline.engine.wiring import SqlAccounts

    return Accounts(SqlAccounts(SqlStateStore.connect(ws.database_url)), ws.audit)
