"""The state store on SQLAlchemy: SQLite by default, PostgreSQL for teams.

Every write is its own short transaction, idempotent where a replayed step may repeat it.
Vendor errors become StoreError here.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shipline.errors import StoreError
from shipline.store.pool import ping_when_idle
from shipline.store.records import (
    HEAD,
    MIGRATIONS,
    RunRecord,
    aware,
    mention_pattern,
    workflow_of,
)
from shipline.store.schema import (
    events,
    infra_outputs,
    locks,
    logs,
    outbox,
    releases,
    revisions,
    runs,
    stages,
    steps,
    votes,
    workers,
)


@contextmanager
def migration_lock(database: str | None) -> Iterator[None]:
    """Serialize schema migrations of one SQLite file between processes (a lock file beside it)."""
    if not database or database == ":memory:":
        yield
        return
    lock = Path(f"{database}.migrate.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


OUTBOX_CHANNEL = "shipline_outbox"


_P = sa.bindparam


def _upsert_ctes(
    table: sa.Table, keys: Sequence[str], columns: Sequence[str], name: str
) -> list[Any]:
    """An update of the row at `keys` and, when it updated none, an insert of it: two CTEs of
    one PostgreSQL statement (the insert sees the update's RETURNING, not its effect). Values
    are bound as `{name}_{column}`."""
    where = sa.and_(*(table.c[k] == _P(f"{name}_{k}", type_=table.c[k].type) for k in keys))
    first = table.c[keys[0]]
    updated = (table.update().where(where)
               .values({c: _P(f"{name}_{c}", type_=table.c[c].type) for c in columns})
               .returning(first).cte(f"{name}_u"))  # fmt: skip
    row = [*keys, *columns]
    fresh = sa.select(*(_P(f"{name}_{c}", type_=table.c[c].type).label(c) for c in row))
    inserted = table.insert().from_select(
        row, fresh.where(~sa.exists(updated.select()))
    ).returning(first).cte(f"{name}_i")  # fmt: skip
    return [updated, inserted]


@functools.cache
def _record_statement(
    run_columns: tuple[str, ...],
    stage_columns: tuple[str, ...] | None,
    step_columns: tuple[str, ...] | None,
) -> Any:
    """`record` on PostgreSQL as one statement, built once per shape: bound as the event's
    `ev_*` (the run's id as `ev_run`), and `rv_*`, `sg_*`, `sp_*` for the run, stage and step
    values."""
    run_id = _P("ev_run", type_=sa.Integer)  # no column's name: it would join every SET
    ctes = [events.insert().values(
        run_id=run_id, at=_P("ev_at", type_=events.c.at.type), kind=_P("ev_kind"),
        stage=_P("ev_stage"), step=_P("ev_step"), message=_P("ev_message"),
    ).returning(events.c.id).cte("ev")]  # fmt: skip
    if run_columns:
        ctes.append(runs.update().where(runs.c.id == run_id)
                    .values({c: _P(f"rv_{c}", type_=runs.c[c].type) for c in run_columns})
                    .returning(runs.c.id).cte("rv"))  # fmt: skip
    if stage_columns is not None:
        ctes.extend(_upsert_ctes(stages, ("run_id", "name"), stage_columns, "sg"))
    if step_columns is not None:
        ctes.extend(_upsert_ctes(steps, ("run_id", "stage", "name"), step_columns, "sp"))
    return sa.select(runs.c.cancel_requested).where(runs.c.id == run_id).add_cte(*ctes)


@functools.cache
def _add_revision(dialect: str) -> Any:
    """`add_revision`'s one statement: the revision, unless it is there already."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    columns = ("environment", "service", "revision", "version", "replicas", "cause", "at", "by",
               "run_id")  # fmt: skip
    return (
        insert(revisions)
        .values({c: _P(f"r_{c}") for c in columns})
        .on_conflict_do_nothing(index_elements=["environment", "service", "revision"])
    )


@functools.cache
def _upsert_statements(
    table: sa.Table, keys: tuple[str, ...], columns: tuple[str, ...]
) -> tuple[Any, Any]:
    """(update, insert) of the row at `keys`, built once per shape: bound as `k_*`, `v_*`."""
    where = sa.and_(*(table.c[k] == _P(f"k_{k}") for k in keys))
    update = table.update().where(where).values({c: _P(f"v_{c}") for c in columns})
    insert = table.insert().values(
        {k: _P(f"k_{k}") for k in keys} | {c: _P(f"v_{c}") for c in columns}
    )
    return update, insert


@functools.cache
def _upsert_one(
    dialect: str, table: sa.Table, keys: tuple[str, ...], columns: tuple[str, ...]
) -> Any:
    """The row at `keys` inserted or, when it is there, updated: one statement (`INSERT ... ON
    CONFLICT DO UPDATE`), bound as `_upsert_statements`'s are."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = (
        (postgresql if dialect == "postgresql" else sqlite)
        .insert(table)
        .values({k: _P(f"k_{k}") for k in keys} | {c: _P(f"v_{c}") for c in columns})
    )
    return insert.on_conflict_do_update(
        index_elements=list(keys), set_={c: insert.excluded[c] for c in columns}
    )


@functools.cache
def _required(table: sa.Table) -> frozenset[str]:
    """The columns an insert of a row of `table` must be given (no default, no null)."""
    return frozenset(
        c.name for c in table.columns
        if not c.nullable and c.default is None and c.server_default is None
    )  # fmt: skip


# the engine's hottest reads, built once: SQLAlchemy builds and keys a statement in about the
# time it takes to run it, and a statement object keeps its cache key
_RUN = runs.select().where(runs.c.id == _P("the_run"))
_EVENT = events.insert().values(
    run_id=_P("ev_run"), at=_P("ev_at"), kind=_P("ev_kind"), stage=_P("ev_stage"),
    step=_P("ev_step"), message=_P("ev_message"),
)  # fmt: skip
# `record`'s event on SQLite, returning whether its run is asked to cancel (one statement)
_EVENT_AND_CANCEL = _EVENT.returning(
    sa.select(runs.c.cancel_requested).where(runs.c.id == _P("ev_run")).scalar_subquery()
)
_REQUESTED_BY = sa.select(runs.c.requested_by).where(runs.c.id == _P("the_run"))
_PHASE = sa.select(runs.c.phase).where(runs.c.id == _P("the_run"))
_LISTED = sa.select(*(c for c in runs.c if c.name != "spec"))  # a list of runs: `list_runs`
_RUN_STATE = _LISTED.where(runs.c.id == _P("the_run"))  # a run without its specification
_STAGES = stages.select().where(stages.c.run_id == _P("the_run")).order_by(stages.c.position)
_STEPS = (steps.select().where(steps.c.run_id == _P("the_run"))
          .order_by(steps.c.stage, steps.c.position))  # fmt: skip
_STEP = steps.select().where(steps.c.run_id == _P("the_run"), steps.c.stage == _P("the_stage"),
                             steps.c.name == _P("the_step"))  # fmt: skip
_VOTES = votes.select().where(votes.c.run_id == _P("the_run")).order_by(votes.c.id)
_STAGE_VOTES = (
    votes.select()
    .where(votes.c.run_id == _P("the_run"), votes.c.stage == _P("the_stage"))
    .order_by(votes.c.id)
)


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def _run(row: Any, **read_apart: Any) -> RunRecord:
    data = {**row._mapping, **read_apart}
    for key in ("requested_at", "started_at", "finished_at", "wake_at"):
        data[key] = aware(data[key])
    return RunRecord(**data)


def _rows(result: Any) -> list[dict[str, Any]]:
    out = []
    for row in result:
        data = dict(row._mapping)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = aware(value)
        out.append(data)
    return out


class SqlStateStore:
    """Runs and everything about them, in one SQL database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._requesters: dict[int, str] = {}  # run id -> who asked (`requested_by`)
        # SQLite has one writer at a time: this process's threads take turns here rather than
        # in SQLite's busy handler, which sleeps 1, 2, 5, 10 ... ms between its tries
        self._one_writer: AbstractContextManager[Any] = (
            threading.RLock() if self.sqlite else nullcontext()
        )
        # single-statement reads (and `record`, one statement) without BEGIN/ROLLBACK around
        # them, two round trips each on PostgreSQL: a pool of its own whose connections are
        # in autocommit from the start (switching a shared connection at each checkout cost as
        # much as the read). SQLite's driver opens no transaction for a read anyway.
        self.reader = engine
        if not self.sqlite:
            self.reader = sa.create_engine(engine.url, isolation_level="AUTOCOMMIT")
            ping_when_idle(self.reader)

    @classmethod
    def connect(cls, url: str, *, migrate: bool = True) -> SqlStateStore:
        """Open the store at `url` and bring its schema up to date."""
        try:
            engine = sa.create_engine(url, future=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot open the state store: {exc}") from exc
        ping_when_idle(engine)
        if engine.dialect.name == "sqlite":

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.close()

        store = cls(engine)
        if migrate:
            store.migrate()
        return store

    def _at_head(self) -> bool:
        """Whether the schema is already at the newest migration (read without Alembic, which
        costs a command more to import than the check itself)."""
        try:
            with self.engine.connect() as conn:
                found = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
                return set(found) == {HEAD}
        except sa.exc.SQLAlchemyError:
            return False  # no schema yet

    def migrate(self) -> None:
        """Apply Alembic migrations up to head; concurrent processes take turns. A schema that
        is already at head costs one query."""
        if self._at_head():
            return
        from alembic import command
        from alembic.config import Config as AlembicConfig

        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        database = self.engine.url.database if self.sqlite else None
        with migration_lock(database):
            try:
                with self._write() as conn:
                    if self.engine.dialect.name == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242424242)"))
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(f"cannot migrate the state store: {exc}") from exc

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()
        if self.reader is not self.engine:
            self.reader.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            # On SQLite the driver begins the transaction at its first write (a write that must
            # read first under the lock begins with a write: `UPDATE ... WHERE 0`).
            with self._one_writer, self.engine.begin() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"state store write failed: {type(exc).__name__}") from exc

    def _read(self, query: Any, bound: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            with self.reader.connect() as conn:
                return _rows(conn.execute(query, bound))
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"state store read failed: {type(exc).__name__}") from exc

    # runs ---------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        pipeline: str,
        environment: str | None,
        services: dict[str, str],
        params: dict[str, Any],
        spec: dict[str, Any],
        requested_by: str,
        emergency_reason: str | None = None,
        queue: str | None = None,
    ) -> RunRecord:
        """Record a new pending run, give it its workflow id and queue it (through the outbox,
        on `queue` or any worker's). The record returned carries `spec` as given (JSON values),
        not read back: a promotion's is about 90 kB of JSON."""
        with self._write() as conn:
            result = conn.execute(
                runs.insert().values(
                    pipeline=pipeline,
                    environment=environment,
                    services=services,
                    params=params,
                    spec=spec,
                    requested_by=requested_by,
                    requested_at=utcnow(),
                    phase="pending",
                    cancel_requested=False,
                    emergency_reason=emergency_reason,
                    queue=queue,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            run_id = int(key[0])
            workflow_id = f"shipline-run-{run_id}"
            conn.execute(runs.update().where(runs.c.id == run_id).values(workflow_id=workflow_id))
            # queued by a worker, in this same transaction: a recorded run is never left unqueued
            self._post(conn, "enqueue", workflow_id, run_id)
        record = self.get_run(run_id, spec=False)
        assert record is not None
        return replace(record, spec=spec)

    def get_run(self, run_id: int, *, spec: bool = True) -> RunRecord | None:
        """The run, or None (`spec=False`: its specification left unread, `spec` empty, for
        a look at its state: a promotion's is about 90 kB of JSON)."""
        try:
            with self.reader.connect() as conn:
                row = conn.execute(_RUN if spec else _RUN_STATE, {"the_run": run_id}).first()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"state store read failed: {type(exc).__name__}") from exc
        if row is None:
            return None
        return _run(row) if spec else _run(row, spec={})

    def phase_of(self, run_id: int) -> str | None:
        """The run's phase alone (None: no such run): what a command waiting for a run's end
        asks each time the run moves."""
        rows = self._read(_PHASE, {"the_run": run_id})
        return str(rows[0]["phase"]) if rows else None

    def list_runs(self, *, limit: int = 50, environment: str | None = None) -> list[RunRecord]:
        """Newest runs first, their specifications left unread (`spec` empty: `get_run` has
        it). A deploy of 22 services records about 40 kB of it, which a list would decode for
        every run and use for none."""
        query = _LISTED.order_by(runs.c.id.desc()).limit(limit)
        if environment:  # its own, or one a promotion moves through (`RunRecord.touches`)
            mentioned = sa.cast(runs.c.params, sa.Text).like(
                mention_pattern(environment), escape="\\"
            )
            query = query.where(sa.or_(runs.c.environment == environment, mentioned))
        found: list[RunRecord] = []
        try:
            with self.reader.connect() as conn:
                while True:
                    page = [_run(row, spec={}) for row in conn.execute(query)]
                    found += [r for r in page if not environment or r.touches(environment)]
                    if len(found) >= limit or len(page) < limit:
                        return found[:limit]
                    query = query.where(runs.c.id < page[-1].id)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"state store read failed: {type(exc).__name__}") from exc

    def marks(self) -> tuple[int, ...]:
        """The newest run, event, log line and vote ids: when none moved, nothing about any run
        changed (one query, however many runs there are; what live views poll)."""
        query = sa.select(
            sa.select(sa.func.max(runs.c.id)).scalar_subquery(),
            sa.select(sa.func.max(events.c.id)).scalar_subquery(),
            sa.select(sa.func.max(logs.c.id)).scalar_subquery(),
            sa.select(sa.func.max(votes.c.id)).scalar_subquery(),
        )
        try:
            with self.reader.connect() as conn:
                row = conn.execute(query).one()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"state store read failed: {type(exc).__name__}") from exc
        return tuple(int(v or 0) for v in row)

    # parking: a waiting run holds no worker ------------------------------------------------

    @staticmethod
    def _hold_run(conn: Connection, run_id: int) -> None:
        """Take the run's row for this transaction before reading it (the write lock on SQLite,
        the row lock on PostgreSQL): parking and waking never interleave."""
        conn.execute(runs.update().where(runs.c.id == run_id).values(segment=runs.c.segment))

    def park(self, run_id: int, workflow: str, stage: str, wake_at: datetime | None) -> str:
        """Park the run at `stage` until woken (a vote, a released lock, cancellation) or
        `wake_at`: 'parked'; 'woken' when something happened while it was deciding to park
        (nothing parked: the caller looks again); 'cancelled' when it was asked to stop;
        'gone' when `workflow` no longer owns the run (a recovered old segment: it stops)."""
        with self._write() as conn:
            self._hold_run(conn, run_id)
            row = conn.execute(
                sa.select(
                    runs.c.wake_pending, runs.c.workflow_id, runs.c.segment,
                    runs.c.cancel_requested,
                ).where(runs.c.id == run_id)
            ).one()  # fmt: skip
            if workflow_of(row.workflow_id, row.segment) != workflow:
                return "gone"
            if row.cancel_requested:
                return "cancelled"
            if row.wake_pending:
                conn.execute(runs.update().where(runs.c.id == run_id).values(wake_pending=False))
                return "woken"
            conn.execute(
                runs.update().where(runs.c.id == run_id).values(parked=stage, wake_at=wake_at)
            )
            return "parked"

    def wake(self, run_id: int) -> str | None:
        """Something happened to the run. Parked: the workflow id of its next segment, for the
        caller to enqueue; running: noted, so that it does not park on stale news (None)."""
        with self._write() as conn:
            self._hold_run(conn, run_id)
            row = conn.execute(
                sa.select(
                    runs.c.parked, runs.c.segment, runs.c.workflow_id, runs.c.finished_at
                ).where(runs.c.id == run_id)
            ).first()
            if row is None or row.finished_at is not None:
                return None
            if row.parked is None:
                conn.execute(runs.update().where(runs.c.id == run_id).values(wake_pending=True))
                return None
            return workflow_of(str(row.workflow_id), int(row.segment) + 1)

    def resume(self, run_id: int, workflow: str) -> bool:
        """The continuation `workflow` takes the parked run over (False for a duplicate or a
        stale one; True again for the one that took it, recovered after a crash)."""
        with self._write() as conn:
            self._hold_run(conn, run_id)
            row = conn.execute(
                sa.select(runs.c.parked, runs.c.segment, runs.c.workflow_id).where(
                    runs.c.id == run_id
                )
            ).one()
            if workflow_of(row.workflow_id, row.segment) == workflow:
                return True  # taken over already, before a crash: still this workflow's
            if row.parked is None or workflow_of(row.workflow_id, row.segment + 1) != workflow:
                return False
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(parked=None, wake_at=None, wake_pending=False, segment=row.segment + 1)
            )
            return True

    # the outbox: what the CLI and the server ask of the durable engine ----------------------

    @staticmethod
    def _post(
        conn: Connection,
        kind: str,
        workflow_id: str,
        run_id: int | None,
        topic: str | None = None,
        message: dict[str, Any] | None = None,
    ) -> None:
        conn.execute(
            outbox.insert().values(
                kind=kind, workflow_id=workflow_id, run_id=run_id, topic=topic, message=message,
                posted_at=utcnow(),
            )
        )  # fmt: skip
        if conn.dialect.name == "postgresql":  # workers on every machine hear it at commit
            conn.execute(sa.text(f"SELECT pg_notify('{OUTBOX_CHANNEL}', '')"))

    def post(
        self,
        kind: str,
        workflow_id: str,
        run_id: int | None,
        topic: str | None = None,
        message: dict[str, Any] | None = None,
    ) -> None:
        """Ask the workers to queue workflow `workflow_id` of run `run_id` (`enqueue`), to
        deliver `message` to its `topic` (`send`), or to queue again the runs of dead worker
        `workflow_id` (`recover`, posted by `adopt`)."""
        with self._write() as conn:
            self._post(conn, kind, workflow_id, run_id, topic, message)

    def listen_for_posts(self, stop: Callable[[], bool], heard: Callable[[], object]) -> None:
        """Until `stop()`, call `heard()` whenever something is posted to the outbox (from any
        machine): PostgreSQL's LISTEN/NOTIFY. Returns at once on SQLite (nothing to hear: the
        local doorbell serves one machine)."""
        if self.sqlite:
            return
        raw = self.engine.raw_connection()
        try:
            connection: Any = raw.driver_connection
            connection.commit()
            connection.autocommit = True
            connection.execute(f"LISTEN {OUTBOX_CHANNEL}")
            while not stop():
                if any(True for _ in connection.notifies(timeout=1.0, stop_after=1)):
                    heard()
        finally:
            raw.invalidate()  # a listening session is not given back to the pool

    def posted(self, limit: int = 500) -> list[dict[str, Any]]:
        """The oldest requests of the outbox (one query for all of them), each with the queue
        of its run (`run_queue`: None for any worker's, or no run)."""
        query = (
            sa.select(outbox, runs.c.queue.label("run_queue"))
            .select_from(outbox.outerjoin(runs, runs.c.id == outbox.c.run_id))
            .order_by(outbox.c.id)
            .limit(limit)
        )
        return self._read(query)

    def done(self, ids: Sequence[int]) -> None:
        """Requests carried out (another worker may have done them too: both are idempotent)."""
        if ids:
            with self._write() as conn:
                conn.execute(outbox.delete().where(outbox.c.id.in_(list(ids))))

    # workers: who serves this store, and who has gone silent --------------------------------

    def register_worker(self, name: str, host: str, pid: int, local_queue: str | None) -> None:
        """Worker `name` starts (again): its row, seen now."""
        now = utcnow()
        with self._write() as conn:
            conn.execute(workers.delete().where(workers.c.name == name))
            conn.execute(
                workers.insert().values(
                    name=name, host=host, pid=pid, local_queue=local_queue, started_at=now,
                    seen_at=now,
                )
            )  # fmt: skip

    def beat(self, name: str) -> bool:
        """Worker `name` is alive; False when its row is gone: another worker took it for dead
        and adopted its runs (it must stop at once)."""
        with self._write() as conn:
            done = conn.execute(
                workers.update().where(workers.c.name == name).values(seen_at=utcnow())
            )
            return done.rowcount == 1

    def silent_workers(self, before: datetime) -> list[dict[str, Any]]:
        """Workers not seen since `before`."""
        return self._read(workers.select().where(workers.c.seen_at < before))

    def registered(self, name: str) -> bool:
        """Whether worker `name` is a member now (it registered again since an adoption)."""
        return bool(self._read(sa.select(workers.c.name).where(workers.c.name == name)))

    def adopt(self, name: str, seen_at: datetime) -> bool:
        """Take silent worker `name` over: True for the one caller that removes its row (still
        as last seen at `seen_at`), False for everyone else. In the same transaction the outbox
        is asked to `recover` its runs, so a crash between the two loses nothing: whichever
        worker carries the request out queues them again (retried until it succeeds)."""
        with self._write() as conn:
            done = conn.execute(
                workers.delete().where(workers.c.name == name, workers.c.seen_at == seen_at)
            )
            if done.rowcount != 1:
                return False
            self._post(conn, "recover", name, None)
            return True

    def run_queues(self, run_ids: Sequence[int]) -> dict[int, str | None]:
        """The queue of each of `run_ids`."""
        if not run_ids:
            return {}
        rows = self._read(sa.select(runs.c.id, runs.c.queue).where(runs.c.id.in_(list(run_ids))))
        return {int(r["id"]): r["queue"] for r in rows}

    def due(self, now: datetime, limit: int = 500) -> list[tuple[int, str]]:
        """Parked runs whose wake time has come, with the workflow id of their next segment:
        one query for every waiting run."""
        query = (
            sa.select(runs.c.id, runs.c.workflow_id, runs.c.segment)
            .where(runs.c.parked.is_not(None), runs.c.wake_at <= now)
            .order_by(runs.c.wake_at)
            .limit(limit)
        )
        try:
            with self.reader.connect() as conn:
                return [(int(r.id), workflow_of(str(r.workflow_id), int(r.segment) + 1))
                        for r in conn.execute(query)]  # fmt: skip
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"state store read failed: {type(exc).__name__}") from exc

    def update_run(self, run_id: int, **values: Any) -> None:
        """Set columns of a run."""
        with self._write() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(**values))

    def request_cancel(self, run_id: int, reason: str) -> bool:
        """Flag a run for cancellation; False when it already ended."""
        with self._write() as conn:
            result = conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .where(runs.c.phase.in_(["pending", "running", "waiting"]))
                .values(cancel_requested=True, cancel_reason=reason)
            )
            return bool(result.rowcount)

    # stages, steps, events, logs -----------------------------------------------------------

    def _upsert(
        self, conn: Connection, table: sa.Table, keys: dict[str, Any], values: dict[str, Any]
    ) -> None:
        bound = {f"k_{k}": v for k, v in keys.items()} | {f"v_{k}": v for k, v in values.items()}
        if _required(table) <= {*keys, *values}:  # a whole row: one statement
            conn.execute(_upsert_one(self.engine.dialect.name, table, tuple(keys), tuple(values)),
                         bound)  # fmt: skip
            return
        update, insert = _upsert_statements(table, tuple(keys), tuple(values))
        if not conn.execute(update, bound).rowcount:
            conn.execute(insert, bound)

    def save_stage(self, run_id: int, name: str, **values: Any) -> None:
        """Insert or update a stage record."""
        with self._write() as conn:
            self._upsert(conn, stages, {"run_id": run_id, "name": name}, values)

    def save_step(self, run_id: int, stage: str, name: str, **values: Any) -> None:
        """Insert or update a step record."""
        with self._write() as conn:
            self._upsert(conn, steps, {"run_id": run_id, "stage": stage, "name": name}, values)

    def requested_by(self, run_id: int) -> str | None:
        """Who asked for run `run_id` (one column: the run's specification stays unread; kept,
        as it never changes: every step of a deploy asks)."""
        if run_id in self._requesters:
            return self._requesters[run_id]
        rows = self._read(_REQUESTED_BY, {"the_run": run_id})
        found = str(rows[0]["requested_by"]) if rows else None
        if found is not None:
            if len(self._requesters) >= 1024:
                self._requesters.clear()
            self._requesters[run_id] = found
        return found

    def record(
        self,
        run_id: int,
        kind: str,
        message: str,
        *,
        stage: str | None = None,
        step: str | None = None,
        stage_values: dict[str, Any] | None = None,
        step_values: dict[str, Any] | None = None,
        run_values: dict[str, Any] | None = None,
    ) -> bool:
        """Append an event and update the run, stage or step it is about, in one transaction.

        Returns whether the run has been asked to cancel (read in the same transaction).
        On PostgreSQL it is one statement: the writes are data-modifying CTEs of the read.
        """
        if not self.sqlite:
            shape = (
                tuple(run_values or ()),
                tuple(stage_values) if stage_values is not None and stage is not None else None,
                tuple(step_values) if step_values is not None and stage is not None
                and step is not None else None,
            )  # fmt: skip
            query = _record_statement(*shape)
            bound: dict[str, Any] = {
                "ev_run": run_id, "ev_at": utcnow(), "ev_kind": kind, "ev_stage": stage,
                "ev_step": step, "ev_message": message,
            }  # fmt: skip
            bound.update({f"rv_{k}": v for k, v in (run_values or {}).items()})
            if shape[1] is not None:
                bound.update({f"sg_{k}": v for k, v in (stage_values or {}).items()},
                             sg_run_id=run_id, sg_name=stage)  # fmt: skip
            if shape[2] is not None:
                bound.update({f"sp_{k}": v for k, v in (step_values or {}).items()},
                             sp_run_id=run_id, sp_stage=stage, sp_name=step)  # fmt: skip
            try:
                with self.reader.connect() as conn:
                    return bool(conn.execute(query, bound).scalar())
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(f"state store write failed: {type(exc).__name__}") from exc
        with self._write() as conn:
            event = {"ev_run": run_id, "ev_at": utcnow(), "ev_kind": kind, "ev_stage": stage,
                     "ev_step": step, "ev_message": message}  # fmt: skip
            cancel = bool(conn.execute(_EVENT_AND_CANCEL, event).scalar())
            if run_values:
                update, _ = _upsert_statements(runs, ("id",), tuple(run_values))
                conn.execute(
                    update, {"k_id": run_id} | {f"v_{k}": v for k, v in run_values.items()}
                )
            if stage_values is not None and stage is not None:
                self._upsert(conn, stages, {"run_id": run_id, "name": stage}, stage_values)
            if step_values is not None and stage is not None and step is not None:
                keys = {"run_id": run_id, "stage": stage, "name": step}
                self._upsert(conn, steps, keys, step_values)
            return cancel  # read with the event: the writes after it never set it

    def stages(self, run_id: int) -> list[dict[str, Any]]:
        """The run's stages in order."""
        return self._read(_STAGES, {"the_run": run_id})

    def steps(self, run_id: int) -> list[dict[str, Any]]:
        """The run's steps in order."""
        return self._read(_STEPS, {"the_run": run_id})

    def step(self, run_id: int, stage: str, name: str) -> dict[str, Any] | None:
        """One step of a run, or None when it has not started."""
        rows = self._read(_STEP, {"the_run": run_id, "the_stage": stage, "the_step": name})
        return rows[0] if rows else None

    def events(self, run_id: int, after: int = 0, kind: str | None = None) -> list[dict[str, Any]]:
        """Events of a run with id greater than `after` (of `kind` only, when given)."""
        query = events.select().where(events.c.run_id == run_id).where(events.c.id > after)
        if kind is not None:
            query = query.where(events.c.kind == kind)
        return self._read(query.order_by(events.c.id))

    def add_log(self, run_id: int, stage: str, step: str, line: str) -> None:
        """Append a log line of a step."""
        with self._write() as conn:
            conn.execute(
                logs.insert().values(run_id=run_id, stage=stage, step=step, at=utcnow(), line=line)
            )

    def add_logs(self, lines: list[tuple[int, str, str, datetime, str]]) -> None:
        """Append log lines (run, stage, step, time, line) in one transaction, in order."""
        if not lines:
            return
        rows = [
            {"run_id": run, "stage": stage, "step": step, "at": at, "line": line}
            for run, stage, step, at, line in lines
        ]
        with self._write() as conn:
            conn.execute(logs.insert(), rows)

    def logs(self, run_id: int, after: int = 0) -> list[dict[str, Any]]:
        """The log lines of a run with id greater than `after` (every one by default)."""
        query = logs.select().where(logs.c.run_id == run_id).where(logs.c.id > after)
        return self._read(query.order_by(logs.c.id))

    # approvals -------------------------------------------------------------------------------

    def add_vote(
        self, run_id: int, stage: str, user: str, approve: bool, comment: str | None
    ) -> datetime:
        """Record a vote; returns its time."""
        at = utcnow()
        with self._write() as conn:
            conn.execute(
                votes.insert().values(
                    run_id=run_id, stage=stage, user=user, approve=approve, comment=comment, at=at
                )
            )
        return at

    def votes(self, run_id: int, stage: str | None = None) -> list[dict[str, Any]]:
        """Votes on a run (or one of its stages), oldest first."""
        if stage:
            return self._read(_STAGE_VOTES, {"the_run": run_id, "the_stage": stage})
        return self._read(_VOTES, {"the_run": run_id})

    def warm(self) -> None:
        """Make once each read a look at a run makes (its phase, its document, the newest runs
        a promotion's check reads), for a run that does not exist: each statement is compiled
        into the engine's cache, about a millisecond each, which the first command a worker
        answers would otherwise pay."""
        none = 0  # run ids start at 1
        self.phase_of(none)
        self.get_run(none, spec=False)
        self.stages(none)
        self.steps(none)
        self.votes(none)
        self.events(none, kind="report")
        self.list_runs(limit=1)

    # locks ---------------------------------------------------------------------------------

    @contextmanager
    def _locked(self, keys: Sequence[str]) -> Iterator[Connection]:
        """A transaction that serializes every other one touching the same lock keys."""
        try:
            with self._one_writer, self.engine.begin() as conn:
                if self.sqlite:
                    conn.exec_driver_sql(
                        "UPDATE locks SET state = state WHERE 0"
                    )  # take the write lock
                else:
                    for key in sorted(keys):
                        number = int.from_bytes(
                            hashlib.sha256(key.encode()).digest()[:8], "big", signed=True
                        )
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": number})
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"state store lock failed: {type(exc).__name__}") from exc

    def lock_transaction(self, keys: Sequence[str]) -> Any:
        """Context manager: a transaction serialized on `keys` (for the engine's lock decisions)."""
        return self._locked(keys)

    def lock_entries(self, conn: Connection, key: str) -> list[dict[str, Any]]:
        """Entries for one lock key (interested, queued or holding), oldest registration first,
        each with its run's `requested_at` (latest-only is decided by submission order)."""
        return self.lock_entries_of(conn, [key]).get(key, [])

    def lock_entries_of(
        self, conn: Connection, keys: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """`lock_entries` of several keys, in one query (a key with none is left out)."""
        query = (
            sa.select(locks, runs.c.requested_at)
            .join(runs, runs.c.id == locks.c.run_id)
            .where(locks.c.key.in_(sorted(set(keys))))
            .order_by(locks.c.key, locks.c.registered_at, locks.c.run_id)
        )
        found: dict[str, list[dict[str, Any]]] = {}
        for row in _rows(conn.execute(query)):
            found.setdefault(row["key"], []).append(row)
        return found

    def set_lock_state(
        self, conn: Connection, run_id: int, keys: Sequence[str], state: str
    ) -> None:
        """Create or move `run_id`'s entries for `keys` to `state` (interested/queued/holding):
        one read, at most one insert and one update, however many keys."""
        now = utcnow()
        mine = sa.and_(locks.c.run_id == run_id, locks.c.key.in_(sorted(set(keys))))
        have = {row.key: row.state for row in conn.execute(sa.select(locks.c.key, locks.c.state)
                                                          .where(mine))}  # fmt: skip
        new = sorted({key for key in keys if key not in have})
        if new:
            queued = now if state != "interested" else None
            conn.execute(
                locks.insert(),
                [{"key": key, "run_id": run_id, "state": state, "registered_at": now,
                  "queued_at": queued} for key in new],
            )  # fmt: skip
        moved = sorted({key for key in keys if key in have and have[key] != state})
        if moved:
            values: dict[str, Any] = {"state": state}
            if state == "queued":
                values["queued_at"] = now
            conn.execute(
                locks.update()
                .where(locks.c.run_id == run_id, locks.c.key.in_(moved))
                .values(**values)
            )

    def leave_locks(self, run_id: int) -> list[int]:
        """Drop every lock entry of `run_id`; return the runs that may take a lock now: on each
        key, the first queued (first come, first served) and the newest submitted of the
        queued (latest-only), not every waiter (each would wake only to queue again).
        Serialized with the lock decisions on the same keys: a run queueing while this one
        leaves is either seen here (and woken) or sees the lock free."""
        keys = [r["key"] for r in self._read(locks.select().where(locks.c.run_id == run_id))]
        with self._locked(keys) as conn:
            conn.execute(locks.delete().where(locks.c.run_id == run_id))
            chosen: set[int] = set()
            entries = self.lock_entries_of(conn, keys)
            for key in keys:
                queued = [e for e in entries.get(key, []) if e["state"] == "queued"]
                if queued:
                    chosen.add(
                        int(min(queued, key=lambda e: (e["queued_at"], e["run_id"]))["run_id"])
                    )
                    chosen.add(
                        int(max(queued, key=lambda e: (e["requested_at"], e["run_id"]))["run_id"])
                    )
            return sorted(chosen)

    def lock_holders(self) -> list[dict[str, Any]]:
        """All lock entries (for `status` and tests)."""
        return self._read(locks.select().order_by(locks.c.key, locks.c.queued_at))

    # releases ------------------------------------------------------------------------------

    def create_release(
        self,
        name: str,
        services: dict[str, Any],
        *,
        created_by: str,
        commit: str | None,
        source: str | None,
    ) -> dict[str, Any]:
        """Record an immutable release; a name can be used once."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    releases.insert().values(
                        name=name,
                        created_at=utcnow(),
                        created_by=created_by,
                        commit=commit,
                        services=services,
                        source=source,
                    )
                )
        except sa.exc.IntegrityError as exc:
            from shipline.errors import UserError

            raise UserError(
                f"release '{name}' already exists", hint="releases are immutable; pick another name"
            ) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"state store write failed: {type(exc).__name__}") from exc
        found = self.release(name)
        assert found is not None
        return found

    def release(self, name: str) -> dict[str, Any] | None:
        """The release called `name`."""
        rows = self._read(releases.select().where(releases.c.name == name))
        return rows[0] if rows else None

    def list_releases(self, limit: int = 50) -> list[dict[str, Any]]:
        """Newest releases first."""
        return self._read(releases.select().order_by(releases.c.id.desc()).limit(limit))

    # revisions ---------------------------------------------------------------------------------

    def add_revision(self, environment: str, service: str, entry: dict[str, Any]) -> None:
        """Remember a revision a target recorded (once: a replayed step adds nothing)."""
        values = {
            "environment": environment,
            "service": service,
            "revision": int(entry["revision"]),
            "version": str(entry["version"]),
            "replicas": int(entry["replicas"]),
            "cause": str(entry["cause"])[:200],
            "at": entry.get("at") or utcnow(),
            "by": entry.get("by"),
            "run_id": entry.get("run"),
        }
        with self._write() as conn:  # a replayed step's revision is there: nothing is added
            conn.execute(
                _add_revision(self.engine.dialect.name), {f"r_{k}": v for k, v in values.items()}
            )

    def revisions(self, environment: str, service: str) -> list[dict[str, Any]]:
        """A service's revisions in an environment, oldest first."""
        return self._read(
            revisions.select()
            .where(revisions.c.environment == environment, revisions.c.service == service)
            .order_by(revisions.c.revision)
        )

    def versions_before(
        self, environments: list[str], services: list[str], run_id: int
    ) -> dict[tuple[str, str], str]:
        """The version each of `services` had in each of `environments` from the newest
        revision another run than `run_id` made (or nobody's): (environment, service) ->
        version, none for a service never deployed there. One query, however many services."""
        if not environments or not services:
            return {}
        newest = (
            sa.select(
                revisions.c.environment, revisions.c.service,
                sa.func.max(revisions.c.revision).label("top"),
            )
            .where(
                revisions.c.environment.in_(environments),
                revisions.c.service.in_(services),
                sa.or_(revisions.c.run_id.is_(None), revisions.c.run_id != run_id),
            )
            .group_by(revisions.c.environment, revisions.c.service)
            .subquery()
        )  # fmt: skip
        query = sa.select(revisions.c.environment, revisions.c.service, revisions.c.version).join(
            newest,
            sa.and_(
                revisions.c.environment == newest.c.environment,
                revisions.c.service == newest.c.service,
                revisions.c.revision == newest.c.top,
            ),
        )
        return {(r["environment"], r["service"]): str(r["version"]) for r in self._read(query)}

    # infrastructure outputs ----------------------------------------------------------------

    def record_infra_outputs(
        self, stack: str, environment: str, run_id: int, outputs: dict[str, Any]
    ) -> None:
        """Keep the outputs an apply left (once per run: a replayed step adds nothing)."""
        try:
            with self.engine.begin() as conn:
                found = conn.execute(
                    infra_outputs.select().where(
                        infra_outputs.c.stack == stack,
                        infra_outputs.c.environment == environment,
                        infra_outputs.c.run_id == run_id,
                    )
                ).first()
                if found is None:
                    conn.execute(
                        infra_outputs.insert().values(
                            stack=stack,
                            environment=environment,
                            run_id=run_id,
                            outputs=outputs,
                            at=utcnow(),
                        )
                    )
        except sa.exc.IntegrityError:
            return
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"state store write failed: {type(exc).__name__}") from exc

    def infra_outputs(self, stack: str, environment: str) -> dict[str, Any] | None:
        """The newest outputs of (stack, environment): {run_id, outputs, at}, or None."""
        rows = self._read(
            infra_outputs.select()
            .where(infra_outputs.c.stack == stack, infra_outputs.c.environment == environment)
            .order_by(infra_outputs.c.id.desc())
            .limit(1)
        )
        return rows[0] if rows else None
