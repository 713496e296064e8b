"""Revision history: what the engine remembers of every revision a target recorded, with who
asked and which run (`shipline history`, like `helm history`)."""

from __future__ import annotations

from typing import Any

from shipline.domain.deploy import Revision
from shipline.domain.models import Environment
from shipline.domain.ports import DeployTarget
from shipline.engine.wiring import SqlStateStore
from shipline.engine.workspace import Workspace


def remember(
    store: SqlStateStore,
    target: DeployTarget,
    environment: str,
    service: str,
    *,
    by: str | None,
    run: int | None,
    made: Revision | None = None,
) -> None:
    """Copy into the state store revision `made` of `service` (what the caller's change just
    made), or else the target's newest one."""
    if made is None:
        found = target.history(environment, service)
        if not found:
            return
        made = found[-1]
    store.add_revision(
        environment,
        service,
        {
            "revision": made.number,
            "version": made.version,
            "replicas": made.replicas,
            "cause": made.cause,
            "by": by,
            "run": run,
        },
    )


def read_history(ws: Workspace, env: Environment, service: str) -> list[Revision]:
    """The remembered revisions of `service` in `env`, oldest first."""
    store = SqlStateStore.connect(ws.database_url)
    try:
        rows: list[dict[str, Any]] = store.revisions(env.name, service)
    finally:
        store.close()
    return [
        Revision(
            int(r["revision"]),
            str(r["version"]),
            int(r["replicas"]),
            r["at"].isoformat() if hasattr(r["at"], "isoformat") else str(r["at"]),
            str(r["cause"]),
            by=r["by"],
            run=r["run_id"],
        )
        for r in rows
    ]
