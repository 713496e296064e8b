"""Run the durable engine inside the test process, on SQLite or PostgreSQL."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shipline.domain.pipeline import PipelineSpec
from shipline.engine import durable
from shipline.engine.durable import EngineClient
from shipline.engine.runs import RunService
from shipline.engine.runtime import Runtime, system_database_url
from shipline.store.audit import SqlAuditLog
from shipline.store.sql import RunRecord, SqlStateStore

PG_ENV = "SHIPLINE_TEST_DATABASE_URL"
BACKENDS = ["sqlite", "postgresql"]
TEST_AUDIT_KEY = b"k" * 64  # the audit chain's MAC key in tests


def fresh_database(backend: str, folder: Path) -> tuple[str, str]:
    """(state store URL, DBOS system URL) for a database nobody else uses."""
    if backend == "sqlite":
        url = f"sqlite:///{folder / 'state.db'}"
        return url, system_database_url(url, folder)
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(
            f"PostgreSQL is not running: {PG_ENV} is unset (scripts/test starts one with initdb/pg_ctl)"
        )
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = base.rsplit("/", 1)[0] + f"/{name}"
    return url, system_database_url(url, folder)


@dataclass
class Engine:
    """An engine running in this process, and the service that starts runs on it."""

    runtime: Runtime
    service: RunService
    state_url: str
    system_url: str
    folder: Path

    @property
    def store(self) -> SqlStateStore:
        return self.runtime.store

    def start(self, stages: list[dict[str, Any]], **kw: Any) -> RunRecord:
        spec = PipelineSpec.model_validate({"kind": kw.pop("kind", "test"), "stages": stages})
        return self.service.start(spec, actor=kw.pop("actor", "ann"), **kw)

    def wait(self, run_id: int, phases: tuple[str, ...] = ("succeeded", "failed", "errored", "cancelled"),
             timeout: float = 30) -> RunRecord:  # fmt: skip
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            record = self.store.get_run(run_id)
            assert record is not None
            if record.phase in phases:
                return record
            time.sleep(0.02)
        raise AssertionError(f"run {run_id} stayed {self.store.get_run(run_id)}")

    def wait_stage(self, run_id: int, stage: str, phase: str, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(s["name"] == stage and s["phase"] == phase for s in self.store.stages(run_id)):
                return
            time.sleep(0.02)
        raise AssertionError(
            f"stage {stage} of run {run_id} never became {phase}: {self.store.stages(run_id)}"
        )


@pytest.fixture(scope="module", params=BACKENDS)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """The engine on each backend, launched once per backend and test module."""
    folder = tmp_path_factory.mktemp(f"engine-{request.param}")
    state_url, system_url = fresh_database(request.param, folder)
    store = SqlStateStore.connect(state_url)
    runtime = Runtime(
        store=store,
        audit=SqlAuditLog(store, TEST_AUDIT_KEY),
        lock_poll_seconds=0.2,
        wait_chunk_seconds=0.2,
    )
    durable.launch(
        runtime, system_url, executor_id=f"test-{request.param}", poll_seconds=0.05,
        notify_poll_seconds=0.05,
    )  # fmt: skip
    client = EngineClient(system_url)
    service = RunService(store, client, runtime.audit)
    yield Engine(runtime, service, state_url, system_url, folder)
    client.close()
    durable.shutdown()
    store.close()


def memory_services(state_dir: Path) -> dict[str, Any]:
    """What the `memory` target of a state folder holds: {"ENV/SERVICE": entry}."""
    root = state_dir / "targets" / "memory"
    return {
        f"{path.parent.name}/{path.stem}": json.loads(text)
        for path in sorted(root.glob("*/*.json"))
        if (text := path.read_text())
    }
