"""A durable step's checkpoint on PostgreSQL in two statements instead of four (ADR 0020).

DBOS checkpoints every step twice: before it runs, a transaction reads the workflow's status
and the step's recorded output (two statements, BEGIN and COMMIT around them); after it, a
transaction checks the execution still owns the workflow (a row lock) and inserts the output
(two more, BEGIN and COMMIT again). That is eight round trips, and on a busy worker the
client side of each is CPU: about a tenth of an approved deploy's. Here each is one statement
on a connection in autocommit, compiled once: the read joins the status to the output, and the
write inserts the output only from the locked status row when its owner matches. The checks,
the locking and the errors raised are DBOS's own (dbos 3.4, `SystemDatabase`); the worker,
crash and kill suites and `tests/integration/engine/test_checkpoints.py` hold it to them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from dbos._context import current_owner_xid
from dbos._debug_trigger import DebugTriggers
from dbos._error import (
    DBOSStepNondeterminismError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)
from dbos._schemas import SCHEMA_PLACEHOLDER
from dbos._sys_db import (
    OperationResultInternal,
    RecordedResult,
    SystemDatabase,
    WorkflowStatusString,
    db_retry,
)
from dbos._sys_db_postgres import PostgresSystemDatabase
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


def install_checkpoints(sys_db: SystemDatabase, pool_size: int) -> sa.Engine | None:
    """Give DBOS's PostgreSQL system database the one-statement checkpoints; any other (SQLite,
    a sharded one) is left as it is. `pool_size`: connections of the autocommit pool, which is
    returned (None when nothing was changed)."""
    if type(sys_db) is not PostgresSystemDatabase:
        return None
    base = sa.create_engine(
        sys_db.engine.url, isolation_level="AUTOCOMMIT", pool_size=pool_size,
        max_overflow=0, pool_pre_ping=False,
        connect_args={"application_name": "shipline_checkpoints"},
    )  # fmt: skip
    # set before the class changes: a step of a recovered run may be checkpointing already
    sys_db.__dict__.update(autocommit=base, compiled={})
    sys_db.__class__ = OneStatementCheckpoints
    return base


class OneStatementCheckpoints(PostgresSystemDatabase):
    """DBOS's PostgreSQL system database whose step checkpoints are one statement each."""

    autocommit: sa.Engine
    compiled: dict[str, tuple[str, dict[str, Any]]]

    def destroy(self) -> None:
        super().destroy()
        self.autocommit.dispose()

    def _run(self, conn: Any, name: str, build: Callable[[], Any], values: dict[str, Any]) -> Any:
        """Execute `build()`'s statement, compiled once, with `values` on `conn` (a connection or
        a session of either pool: the same dialect). DBOS's `_execute_prepared` does the same
        but only for connections of its own engine's dialect object; on the autocommit pool's
        it would build and compile the statement on every call."""
        prepared = self.compiled.get(name)
        if prepared is None:
            compiled = build().compile(
                dialect=self.autocommit.dialect,
                schema_translate_map={SCHEMA_PLACEHOLDER: self.schema},
                render_schema_translate=True,
            )
            # the statement's own constants (the 1000 of a time in milliseconds)
            sql = str(compiled)
            constants = {
                k: b.value for k, b in compiled.binds.items()
                if not b.required and f"%({k})s" in sql
            }  # fmt: skip
            prepared = self.compiled[name] = (sql, constants)
        sql, constants = prepared
        connection = conn.connection() if isinstance(conn, Session) else conn
        return connection.exec_driver_sql(sql, {**constants, **values})

    # the read before a step ---------------------------------------------------------------

    @db_retry()
    def check_operation_execution(
        self,
        workflow_id: str,
        function_id: int,
        function_name: str,
        *,
        owner_key: str | None = None,
    ) -> RecordedResult | None:
        with self._own_key(workflow_id, key=owner_key), self.autocommit.connect() as conn:
            return self._check_operation_execution_txn(
                workflow_id, function_id, function_name, conn
            )

    def _check_operation_execution_txn(
        self,
        workflow_id: str,
        function_id: int,
        function_name: str,
        conn: Any,
    ) -> RecordedResult | None:
        self._reject_shard_key(workflow_id, None)
        row = self._run(
            conn, "check", self._check_statement,
            {"workflow_id": workflow_id, "function_id": function_id},
        ).first()  # fmt: skip
        assert row is not None, f"Error: Workflow {workflow_id} does not exist"
        status, recorded, output, error, recorded_name, child, serialization = row
        if status == WorkflowStatusString.CANCELLED.value:
            raise DBOSWorkflowCancelledError(
                f"Workflow {workflow_id} is cancelled. Aborting function."
            )
        if recorded is None:
            return None
        if function_name != recorded_name:
            raise DBOSUnexpectedStepError(
                workflow_id=workflow_id, step_id=function_id,
                expected_name=function_name, recorded_name=recorded_name,
            )  # fmt: skip
        return {
            "output": output, "error": error, "serialization": serialization,
            "child_workflow_id": child, "child_shard_key": None,
        }  # fmt: skip

    def _check_statement(self) -> Any:
        status, outputs = self.tables.workflow_status, self.tables.operation_outputs
        joined = status.outerjoin(outputs, sa.and_(
            outputs.c.workflow_uuid == status.c.workflow_uuid,
            outputs.c.function_id == sa.bindparam("function_id", type_=sa.Integer),
        ))  # fmt: skip
        return (
            sa.select(status.c.status, outputs.c.function_id, outputs.c.output,
                      outputs.c.error, outputs.c.function_name,
                      outputs.c.child_workflow_id, outputs.c.serialization)
            .select_from(joined)
            .where(status.c.workflow_uuid == sa.bindparam("workflow_id", type_=sa.Text))
        )  # fmt: skip

    # the write after a step ---------------------------------------------------------------

    def record_operation_result(
        self,
        result: OperationResultInternal,
        *,
        completed_at_epoch_ms: int | None = None,
        owner_xid: str | None = None,
        owner_key: str | None = None,
    ) -> None:
        completed_at = (
            completed_at_epoch_ms if completed_at_epoch_ms is not None
            else int(time.time() * 1000)
        )  # fmt: skip
        workflow_id = result["workflow_uuid"]
        child_values = self._child_values(result["child_workflow_id"])

        @db_retry(sys_db=self)
        def record() -> None:
            with self._own_key(workflow_id, key=owner_key), self.autocommit.connect() as conn:
                self._record_operation_result_txn(
                    result, completed_at, conn, owner_xid=owner_xid, child_values=child_values
                )
            DebugTriggers.debug_trigger_point(DebugTriggers.DEBUG_TRIGGER_STEP_COMMIT)

        record()

    def _record_operation_result_txn(
        self,
        result: OperationResultInternal,
        completed_at_epoch_ms: int,
        conn: Any,
        *,
        owner_xid: str | None = None,
        child_values: dict[str, Any] | None = None,
    ) -> None:
        workflow_id = result["workflow_uuid"]
        if owner_xid is None:
            owner_xid = current_owner_xid(workflow_id)
        assert result["error"] is None or result["output"] is None, (
            "Only one of error or output can be set"
        )
        if owner_xid is None or child_values or self._wf_values(workflow_id):
            # no owner to check (one statement already), or a shard key: DBOS's own way
            super()._record_operation_result_txn(
                result, completed_at_epoch_ms, conn, owner_xid=owner_xid,
                child_values=child_values,
            )  # fmt: skip
            return
        values = {
            "workflow_id": workflow_id, "owner_xid": owner_xid,
            "function_id": result["function_id"], "function_name": result["function_name"],
            "started_at": result["started_at_epoch_ms"], "completed_at": completed_at_epoch_ms,
            "output": result["output"], "error": result["error"],
            "child_workflow_id": result["child_workflow_id"],
            "serialization": result["serialization"], "application_name": self.app_name,
        }  # fmt: skip
        try:
            rows = self._run(conn, "record", self._record_statement, values).fetchall()
        except DBAPIError as exc:
            if self._is_unique_constraint_violation(exc):
                raise DBOSStepNondeterminismError(workflow_id, result["function_id"]) from exc
            raise
        if not rows:  # the status row's owner is another execution's (or none)
            raise DBOSWorkflowConflictIDError(workflow_id)
        existing = rows[0][0]
        if existing is None or int(existing) != completed_at_epoch_ms:
            raise DBOSStepNondeterminismError(workflow_id, result["function_id"])

    def _record_statement(self) -> Any:
        """INSERT the output SELECTed from the workflow's status row locked FOR NO KEY UPDATE
        (as DBOS's owner check locks it) when its owner is this execution; a row already
        there is returned unchanged, for the nondeterminism check."""
        status, outputs = self.tables.workflow_status, self.tables.operation_outputs
        owner = (
            sa.select(status.c.workflow_uuid)
            .where(status.c.workflow_uuid == sa.bindparam("workflow_id", type_=sa.Text),
                   status.c.owner_xid == sa.bindparam("owner_xid", type_=sa.Text))
            .with_for_update(key_share=True)
            .cte("owner")
        )  # fmt: skip
        given = {  # column: (its bind parameter, type)
            "function_id": ("function_id", sa.Integer),
            "function_name": ("function_name", sa.Text),
            "started_at_epoch_ms": ("started_at", sa.BigInteger),
            "completed_at_epoch_ms": ("completed_at", sa.BigInteger),
            "output": ("output", sa.Text),
            "error": ("error", sa.Text),
            "child_workflow_id": ("child_workflow_id", sa.Text),
            "serialization": ("serialization", sa.Text),
            "application_name": ("application_name", sa.Text),
        }
        columns: dict[str, Any] = {"workflow_uuid": owner.c.workflow_uuid}
        for column, (name, kind) in given.items():
            columns[column] = sa.bindparam(name, type_=kind)
        columns["retention_timestamp"] = self._now_ms_sql()
        insert = postgresql.insert(outputs).from_select(
            list(columns), sa.select(*columns.values()).select_from(owner)
        )
        return insert.on_conflict_do_update(
            index_elements=["workflow_uuid", "function_id"],
            set_={"completed_at_epoch_ms": outputs.c.completed_at_epoch_ms},
        ).returning(outputs.c.completed_at_epoch_ms)
