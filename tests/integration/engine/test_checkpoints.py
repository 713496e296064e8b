"""A durable step's checkpoint on PostgreSQL (ADR 0020): the one-statement read and write that a
worker installs behave as DBOS's own (the same suite runs over both), and each is one
statement in autocommit."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dbos._error import (
    DBOSStepNondeterminismError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)
from dbos._serialization import DefaultSerializer
from dbos._sys_db import SystemDatabase

from shipline.engine.checkpoints import OneStatementCheckpoints, install_checkpoints
from shipline.engine.durable import ensure_system_database
from tests.engine_harness import fresh_database

OWNER = "execution-1"


@pytest.fixture(scope="module")
def system_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    _, url = fresh_database("postgresql", tmp_path_factory.mktemp("checkpoints"))
    ensure_system_database(url)
    return url


@pytest.fixture(params=["dbos", "one statement"])
def sys_db(request: pytest.FixtureRequest, system_url: str) -> Iterator[SystemDatabase]:
    db = SystemDatabase.create(
        system_database_url=system_url, engine_kwargs={}, engine=None, schema="dbos",
        serializer=DefaultSerializer(), executor_id="test",
    )  # fmt: skip
    if request.param == "one statement":
        assert install_checkpoints(db, 2) is not None
        assert isinstance(db, OneStatementCheckpoints)
    yield db
    db.destroy()


def _workflow(db: SystemDatabase, status: str = "PENDING", owner: str | None = OWNER) -> str:
    workflow_id = f"wf-{uuid.uuid4().hex[:10]}"
    with db.engine.begin() as conn:
        conn.execute(sa.insert(db.tables.workflow_status).values(
            workflow_uuid=workflow_id, status=status, name="w", owner_xid=owner, priority=0,
            created_at=0, updated_at=0,
        ))  # fmt: skip
    return workflow_id


def _result(workflow_id: str, step: int, *, output: str | None = "out",
            error: str | None = None) -> Any:  # fmt: skip
    return {
        "workflow_uuid": workflow_id, "function_id": step, "function_name": "shipline.step",
        "output": output, "error": error, "serialization": "py_pickle",
        "started_at_epoch_ms": 1, "child_workflow_id": None,
    }  # fmt: skip


def _outputs(db: SystemDatabase, workflow_id: str) -> list[tuple[Any, ...]]:
    table = db.tables.operation_outputs
    with db.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            sa.select(table.c.function_id, table.c.output, table.c.completed_at_epoch_ms)
            .where(table.c.workflow_uuid == workflow_id).order_by(table.c.function_id)
        )]  # fmt: skip


def test_a_step_not_run_yet_has_nothing_recorded(sys_db: SystemDatabase) -> None:
    workflow_id = _workflow(sys_db)
    assert sys_db.check_operation_execution(workflow_id, 1, "shipline.step") is None


def test_what_a_step_recorded_is_read_back(sys_db: SystemDatabase) -> None:
    workflow_id = _workflow(sys_db)
    sys_db.record_operation_result(_result(workflow_id, 1), completed_at_epoch_ms=5,
                                   owner_xid=OWNER)  # fmt: skip
    sys_db.record_operation_result(_result(workflow_id, 2, output=None, error="boom"),
                                   completed_at_epoch_ms=6, owner_xid=OWNER)  # fmt: skip
    first = sys_db.check_operation_execution(workflow_id, 1, "shipline.step")
    assert first is not None
    assert (first["output"], first["error"], first["serialization"]) == ("out", None, "py_pickle")
    second = sys_db.check_operation_execution(workflow_id, 2, "shipline.step")
    assert second is not None and (second["output"], second["error"]) == (None, "boom")
    assert sys_db.check_operation_execution(workflow_id, 3, "shipline.step") is None
    assert _outputs(sys_db, workflow_id) == [(1, "out", 5), (2, None, 6)]


def test_a_step_recorded_under_another_name_is_refused(sys_db: SystemDatabase) -> None:
    workflow_id = _workflow(sys_db)
    sys_db.record_operation_result(_result(workflow_id, 1), completed_at_epoch_ms=5,
                                   owner_xid=OWNER)  # fmt: skip
    with pytest.raises(DBOSUnexpectedStepError):
        sys_db.check_operation_execution(workflow_id, 1, "shipline.other")


def test_a_cancelled_workflow_runs_no_further_step(sys_db: SystemDatabase) -> None:
    workflow_id = _workflow(sys_db, status="CANCELLED")
    with pytest.raises(DBOSWorkflowCancelledError):
        sys_db.check_operation_execution(workflow_id, 1, "shipline.step")


def test_a_missing_workflow_is_an_error(sys_db: SystemDatabase) -> None:
    with pytest.raises(AssertionError, match="does not exist"):
        sys_db.check_operation_execution("wf-nobody", 1, "shipline.step")


@pytest.mark.parametrize("owner", ["execution-2", None], ids=["another", "none"])
def test_an_execution_that_no_longer_owns_its_workflow_records_nothing(
    sys_db: SystemDatabase, owner: str | None
) -> None:
    workflow_id = _workflow(sys_db, owner=owner)
    with pytest.raises(DBOSWorkflowConflictIDError):
        sys_db.record_operation_result(_result(workflow_id, 1), completed_at_epoch_ms=5,
                                       owner_xid=OWNER)  # fmt: skip
    assert _outputs(sys_db, workflow_id) == []


def test_a_step_recorded_again_is_kept_once_and_a_different_outcome_is_nondeterminism(
    sys_db: SystemDatabase,
) -> None:
    workflow_id = _workflow(sys_db)
    for _ in range(2):  # a retried write carries the same completion time
        sys_db.record_operation_result(_result(workflow_id, 1), completed_at_epoch_ms=5,
                                       owner_xid=OWNER)  # fmt: skip
    with pytest.raises(DBOSStepNondeterminismError):
        sys_db.record_operation_result(_result(workflow_id, 1, output="other"),
                                       completed_at_epoch_ms=9, owner_xid=OWNER)  # fmt: skip
    assert _outputs(sys_db, workflow_id) == [(1, "out", 5)]


def test_the_owner_check_waits_for_a_hand_off_holding_the_row(sys_db: SystemDatabase) -> None:
    """A hand-off (cancel, recovery) that holds the status row and changes its owner is seen:
    the write waits for it, then finds the workflow no longer this execution's."""
    workflow_id = _workflow(sys_db)
    status = sys_db.tables.workflow_status
    failed: list[BaseException] = []

    def record() -> None:
        try:
            sys_db.record_operation_result(_result(workflow_id, 1), completed_at_epoch_ms=5,
                                           owner_xid=OWNER)  # fmt: skip
        except BaseException as exc:
            failed.append(exc)

    with sys_db.engine.begin() as conn:
        conn.execute(status.update().where(status.c.workflow_uuid == workflow_id)
                     .values(owner_xid="execution-2"))  # fmt: skip
        writer = threading.Thread(target=record)
        writer.start()
        writer.join(0.5)
        assert writer.is_alive()  # waiting for the row
    writer.join(10)
    assert [type(exc) for exc in failed] == [DBOSWorkflowConflictIDError]
    assert _outputs(sys_db, workflow_id) == []


def test_each_checkpoint_is_one_statement_in_autocommit(system_url: str) -> None:
    db = SystemDatabase.create(
        system_database_url=system_url, engine_kwargs={}, engine=None, schema="dbos",
        serializer=DefaultSerializer(), executor_id="test",
    )  # fmt: skip
    install_checkpoints(db, 2)
    seen: list[tuple[str, bool]] = []

    def executed(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append((statement.split(maxsplit=1)[0], conn.connection.dbapi_connection.autocommit))

    try:
        workflow_id = _workflow(db)
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", executed)
        db.check_operation_execution(workflow_id, 1, "shipline.step")
        db.record_operation_result(_result(workflow_id, 1), completed_at_epoch_ms=5,
                                   owner_xid=OWNER)  # fmt: skip
        assert seen == [("SELECT", True), ("WITH", True)]
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", executed)
        db.destroy()


def test_only_postgresql_gets_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dbos.sqlite'}"
    ensure_system_database(url)
    db = SystemDatabase.create(
        system_database_url=url, engine_kwargs={}, engine=None, schema=None,
        serializer=DefaultSerializer(), executor_id="test",
    )  # fmt: skip
    try:
        assert install_checkpoints(db, 2) is None
        assert not isinstance(db, OneStatementCheckpoints)
    finally:
        db.destroy()
