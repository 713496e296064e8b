"""Hosting the durable engine in a process: DBOS launch and shutdown, and a client for the CLI."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, DBOSClient, DBOSConfig
from dbos._error import DBOSNonExistentWorkflowError

from shipline.doorbell import Doorbell, ring
from shipline.engine import workflow  # noqa: F401 - registers the workflow and its steps
from shipline.engine.checkpoints import install_checkpoints
from shipline.engine.runtime import APP_VERSION, RUN_QUEUE, Runtime, install
from shipline.engine.wiring import migration_lock, ping_when_idle
from shipline.errors import AlreadyRunning, StoreError
from shipline.process import hold_lock

WORKER_ENV = "SHIPLINE_WORKER_ID"
# Runs a worker executes at once (a waiting run is parked and does not count): also the bound
# of its threads, whatever number of runs wait.
DEFAULT_CONCURRENCY = 32


def ensure_system_database(url: str) -> None:
    """Create or migrate DBOS's tables (idempotent; concurrent processes take turns on SQLite).
    A SQLite system database is switched to write-ahead logging, as the state store is."""
    database = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
    try:
        with migration_lock(database):
            DBOS.migrate(url, schema="dbos")
            if database:
                with contextlib.closing(sqlite3.connect(database, timeout=30)) as db:
                    db.execute("PRAGMA journal_mode=WAL")  # kept in the file
    except Exception as exc:
        raise StoreError(
            f"cannot prepare the engine database: {type(exc).__name__}: {exc}"
        ) from exc


@sa.event.listens_for(sa.engine.Engine, "connect")
def _sqlite_sync(dbapi_connection: Any, _record: Any) -> None:
    """Every SQLite connection of this process (DBOS's system database too) commits without an
    fsync: with write-ahead logging a killed process loses nothing (only a power cut can drop
    the last commits), and each durable step costs a fraction of what it did."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")


_HELD: list[int] = []


def hold_worker_lock(state_dir: Path, name: str) -> None:
    """Hold `worker-NAME.lock` of the state folder for this process's life (the kernel frees it
    when the process dies, even by `kill -9`); a second worker with the same id is refused."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, holder = hold_lock(state_dir / f"worker-{name}.lock")
    if fd is None:
        raise AlreadyRunning(
            f"worker {name} already runs for {state_dir} (pid {holder})",
            hint="stop it with `shipline worker --stop`, or start this one with another --id",
        )
    _HELD.append(fd)


def launch(
    runtime: Runtime,
    system_url: str,
    *,
    executor_id: str | None = None,
    poll_seconds: float = 2.0,
    notify_poll_seconds: float = 0.5,
    concurrency: int | None = None,
    queues: Sequence[str] | None = None,
    adopt_after: float | None = None,
    on_fenced: Callable[[], None] | None = None,
) -> None:
    """Start the engine in this process: recover this executor's runs, then serve the queue.

    With `queues`, the worker serves those (any worker's, and this machine's local one when the
    project has local targets: `engine.runtime.local_queue`); without, every queue. With
    `adopt_after`, the worker joins the store's workers: it beats every few seconds, and
    adopts the unfinished runs of one silent for `adopt_after` seconds (not those pinned to a
    machine's local queue: they wait for their own worker); `on_fenced` is called if it was
    itself taken for dead (its runs are running elsewhere now: it must stop).

    `poll_seconds` is how often the worker looks for newly submitted runs: each look is a
    database transaction, so an idle worker's cost is set here (2 s: a run starts within 2 s of
    its submission, and an idle worker costs well under 1 % of a core).
    """
    install(runtime)
    logging.getLogger("dbos").setLevel(logging.WARNING)
    ensure_system_database(system_url)
    executor = executor_id or os.environ.get(WORKER_ENV) or "local"
    config: DBOSConfig = {
        "name": "shipline",
        "system_database_url": system_url,
        "application_version": APP_VERSION,
        "executor_id": executor,
        "log_level": "WARNING",
        # On SQLite, messages (votes, cancel, canary promote) are noticed by polling.
        "notification_listener_polling_interval_sec": notify_poll_seconds,
        "run_migrations": False,  # done above, in turn with other processes
        # a connection is checked before use only when it sat idle (ping_when_idle below): a
        # ping before every checkpoint was a quarter of a busy worker's statements
        "db_engine_kwargs": {"pool_pre_ping": False},
    }
    local = next((q for q in queues or () if q != RUN_QUEUE), None)
    if adopt_after is not None:  # a member before it takes any run, so a crash is noticed
        runtime.store.register_worker(executor, socket.gethostname(), os.getpid(), local)
    _quiet_background_jobs()
    DBOS(config=config)
    DBOS.listen_queues([])  # this worker's queues are served by its starter, not DBOS's threads
    DBOS.launch()
    from dbos._dbos import _get_dbos_instance

    sys_db = _get_dbos_instance()._sys_db
    ping_when_idle(sys_db.engine)
    checkpoints = install_checkpoints(sys_db, concurrency or DEFAULT_CONCURRENCY)
    if checkpoints is not None:
        ping_when_idle(checkpoints)
    starter = _Starter([
        DBOS.register_queue(
            queue, worker_concurrency=concurrency or DEFAULT_CONCURRENCY,
            polling_interval_sec=poll_seconds,
        )
        for queue in queues or [RUN_QUEUE]
    ], poll_seconds)  # fmt: skip
    if runtime.enqueue is None:
        client = EngineClient(system_url)
        runtime.enqueue = _EnqueueOnItsQueue(runtime, client, starter)
        _CLIENTS.append((runtime, client))
    membership = None
    if adopt_after is not None:
        membership = _Membership(executor, adopt_after, on_fenced)
    stop = threading.Event()
    state_dir = getattr(runtime.workspace, "state_dir", None)
    bell = Doorbell(state_dir, executor) if state_dir is not None else None
    threads = [threading.Thread(
        target=_schedule, args=(runtime, stop, bell, max(poll_seconds, 0.05)),
        daemon=True, name="shipline-scheduler",
    ), threading.Thread(
        target=starter.serve, args=(stop,), daemon=True, name="shipline-starter",
    )]  # fmt: skip
    if membership is not None:  # its own thread: slow outbox work never delays a heartbeat
        threads.append(threading.Thread(
            target=membership.keep, args=(runtime, stop, state_dir), daemon=True,
            name="shipline-membership",
        ))  # fmt: skip
    for thread in threads:
        thread.start()
    _SCHEDULERS.append((stop, threads, bell))
    if bell is not None and not runtime.store.sqlite:
        listener = threading.Thread(
            target=_listen, args=(runtime, stop, state_dir), daemon=True,
            name="shipline-outbox-listener",
        )  # fmt: skip
        listener.start()


def _quiet_background_jobs() -> None:
    """DBOS's background-jobs thread moves delayed workflows to their queue and cancels those
    past their deadline, each second. Shipline queues nothing delayed and sets no workflow
    deadlines (a run's waits are its own, in the state store), so both jobs find nothing: they
    look once a minute, not each second (dbos 3.4 reads the interval when it starts the
    thread)."""
    import dbos._workflow_commands as jobs

    jobs._BACKGROUND_JOBS_INTERVAL_SEC = BACKGROUND_JOBS_SECONDS


BACKGROUND_JOBS_SECONDS = 60.0
_CLIENTS: list[tuple[Runtime, EngineClient]] = []
_SCHEDULERS: list[tuple[threading.Event, list[threading.Thread], Doorbell | None]] = []
# a request that fails this long is dropped (and logged); a dead worker's `recover` never is
OUTBOX_GIVE_UP = timedelta(hours=1)
log = logging.getLogger("shipline.engine")


@dataclass
class _EnqueueOnItsQueue:
    """Queue a run's workflow on the run's own queue (a machine's local one, or any worker's);
    this worker's starter looks at once when it serves that queue."""

    runtime: Runtime
    client: EngineClient
    starter: _Starter

    def __call__(self, workflow_id: str, run_id: int) -> None:
        self.on(self.runtime.store.run_queues([run_id]).get(run_id), workflow_id, run_id)

    def on(self, queue: str | None, workflow_id: str, run_id: int) -> None:
        """Queue it on `queue` (the run's, as read with the request; None: any worker's)."""
        queue = queue or RUN_QUEUE
        self.client.enqueue(workflow_id, run_id, queue)
        if queue in self.starter.names:
            self.starter.wanted.set()


# how long a worker trusts its last look at whether its version is the newest: for this long
# after an upgraded peer registers, an older worker may still claim a run queued without a
# version (one claimed a moment earlier would have started there too)
VERSION_LOOK_SECONDS = 5.0


class _Starter:
    """Starts the workflows queued on this worker's queues, up to each queue's concurrency: at
    once when this process queued one or a running one ended, else every `poll` seconds (what
    other processes queue). DBOS's own queue threads would wait out their polling interval
    each time; the claim itself is DBOS's (`start_queued_workflows`: rows locked, skipped by
    other workers, marked this executor's), as is the start (`execute_dequeued_workflow`),
    which DBOS exposes only internally (dbos 3.4; ADR 0016)."""

    def __init__(self, queues: list[Any], poll: float) -> None:
        self.queues = queues
        self.names = {queue.name for queue in queues}
        self.poll = poll
        self.wanted = threading.Event()
        # started here, their thread perhaps not yet running: (queue, handle)
        self.starting: list[tuple[str, Any]] = []
        self._queued: Any = None  # the statement of `_anything_queued`, built at first use
        self._latest: tuple[float, bool] | None = None  # (when looked, is this the latest)

    def serve(self, stop: threading.Event) -> None:
        """Until `stop`: start what is queued, each time it is wanted or the poll comes."""
        while not stop.is_set():
            self.wanted.wait(self.poll)
            self.wanted.clear()
            for queue in self.queues:
                if stop.is_set():
                    return
                try:
                    self.start(queue)
                except Exception as exc:  # a busy database or a peer's claim: the next pass
                    log.debug("starting queued runs of %s: %s", queue.name, exc)

    def _anything_queued(self, sys_db: Any, queue: str) -> bool:
        """Whether `queue` holds a workflow to claim (one indexed read): DBOS's claim is a
        transaction of several statements and an application-version query, and an idle
        worker's every poll made it for nothing (a third of its CPU)."""
        if self._queued is None:
            import sqlalchemy as sa

            status = sys_db.tables.workflow_status
            self._queued = (
                sa.select(status.c.workflow_uuid)
                .where(status.c.queue_name == sa.bindparam("queue"),
                       status.c.status.in_(("ENQUEUED", "DELAYED")))
                .limit(1)
            )  # fmt: skip
        with sys_db.engine.connect() as conn:
            return conn.execute(self._queued, {"queue": queue}).first() is not None

    def _is_latest(self, sys_db: Any) -> bool:
        """Whether this worker's application version is the newest registered (it may then
        also claim workflows queued without a version, as the CLI queues them). DBOS reads it
        on every claim, a query as costly as the claim's own; versions change only when
        workers are upgraded, so it is read again after `VERSION_LOOK_SECONDS`."""
        from dbos._utils import GlobalParams

        now = time.monotonic()
        if self._latest is None or now - self._latest[0] >= VERSION_LOOK_SECONDS:
            self._latest = (now, bool(sys_db._is_latest_version(GlobalParams.app_version)))
        return self._latest[1]

    def start(self, queue: Any) -> int:
        """Claim and start what `queue` has room for on this worker; how many were started."""
        from dbos._core import execute_dequeued_workflow
        from dbos._dbos import _get_dbos_instance
        from dbos._utils import GlobalParams, generate_uuid

        dbos = _get_dbos_instance()
        active = dbos._active_workflows_set
        running = set(active.activeList())
        self.starting = [
            (name, handle) for name, handle in self.starting
            if not handle.future.done() and handle.workflow_id not in running
        ]  # fmt: skip
        load = active.count_for_queue(queue.name) + sum(
            1 for name, _ in self.starting if name == queue.name
        )
        if queue._worker_concurrency is not None and load >= queue._worker_concurrency:
            return 0
        if not self._anything_queued(dbos._sys_db, queue.name):
            return 0
        owner = generate_uuid()
        claimed, _ = dbos._sys_db.start_queued_workflows(
            queue, GlobalParams.executor_id, GlobalParams.app_version, None, load,
            owner_xid=owner, is_latest_version=self._is_latest(dbos._sys_db),
        )  # fmt: skip
        if not claimed:
            return 0
        statuses = {s["workflow_uuid"]: s for s in dbos._sys_db.get_workflow_statuses(claimed)}
        for workflow_id in claimed:
            status = statuses.get(workflow_id) or dbos._sys_db.get_workflow_status(workflow_id)
            if status is None:
                log.error("queued workflow %s has no status", workflow_id)
                continue
            try:
                handle = execute_dequeued_workflow(dbos, status, owner)
            except Exception as exc:  # as DBOS does: this one is left to its recovery
                log.error("cannot start %s: %s", workflow_id, exc)
                continue
            future = getattr(handle, "future", None)
            if future is not None:
                self.starting.append((queue.name, handle))
                future.add_done_callback(lambda _: self.wanted.set())  # a slot is free
        return len(claimed)


@dataclass
class _Membership:
    """A worker among the store's workers: its heartbeat, and its look for silent ones."""

    name: str
    adopt_after: float
    on_fenced: Callable[[], None] | None
    next_beat: float = 0.0
    next_look: float = 0.0

    def keep(self, runtime: Runtime, stop: threading.Event, state_dir: Path | None) -> None:
        """Until `stop`: beat, and look for silent workers."""
        while not stop.is_set():
            try:
                self.tend(runtime, state_dir)
            except Exception as exc:  # a busy database now is a retry on the next beat
                log.warning("heartbeat failed: %s", exc)
            stop.wait(max(0.05, min(self.next_beat, self.next_look) - time.monotonic()))

    def tend(self, runtime: Runtime, state_dir: Path | None = None) -> None:
        """Beat and look, each when its time came."""
        now = time.monotonic()
        every = max(0.2, min(2.0, self.adopt_after / 4))
        if now >= self.next_beat:
            self.next_beat = now + every
            if not runtime.store.beat(self.name):
                log.error("worker %s was taken for dead and its runs adopted: stopping", self.name)
                if self.on_fenced is not None:
                    self.on_fenced()
        if now >= self.next_look:
            self.next_look = now + every
            cutoff = datetime.now(UTC) - timedelta(seconds=self.adopt_after)
            for silent in runtime.store.silent_workers(cutoff):
                name = str(silent["name"])
                # the adoption and its `recover` request are one transaction; the scheduler
                # (this worker's or any other's) carries the request out
                if name != self.name and runtime.store.adopt(name, silent["seen_at"]):
                    log.warning("worker %s went silent: adopting its runs", name)
                    if state_dir is not None:
                        ring(state_dir)


def _run_of(workflow_id: str) -> int | None:
    head = workflow_id.removeprefix("shipline-run-")
    number = head.split(".", 1)[0]
    return int(number) if head != workflow_id and number.isdigit() else None


def _recover(runtime: Runtime, executor: str) -> int:
    """Queue again the unfinished workflows of dead executor `executor` (each runs once:
    DBOS's recovery hands a workflow to exactly one worker), except runs pinned to a machine's
    local queue. Uses DBOS's own recovery, which it exposes only internally (dbos 3.4)."""
    from dbos._dbos import _get_dbos_instance
    from dbos._recovery import _recover_workflow

    dbos = _get_dbos_instance()
    pending = dbos._sys_db.get_pending_workflows(executor, APP_VERSION)
    runs = {wf.workflow_id: _run_of(wf.workflow_id) for wf in pending}
    queues = runtime.store.run_queues([r for r in runs.values() if r is not None])
    taken = 0
    for found in pending:
        run = runs[found.workflow_id]
        if run is not None and queues.get(run) is not None:
            continue  # a local target's run: only its own machine's worker may go on with it
        _recover_workflow(dbos, found, [executor])
        taken += 1
    return taken


def _schedule(
    runtime: Runtime,
    stop: threading.Event,
    bell: Doorbell | None,
    interval: float,
) -> None:
    """The worker's scheduler: every `interval`, or at once when its doorbell rings, it carries
    out what the outbox asks (queue a run, deliver a message, queue again a dead worker's
    runs) and queues the continuations of
    parked runs whose time came. Two queries per pass, however many runs wait; several workers
    may both do a request (each is idempotent: a workflow id queues once, a message is sent
    under its outbox id once)."""
    while not stop.is_set():
        try:
            _carry_out(runtime)
            for run_id, workflow_id in runtime.store.due(runtime.clock()):
                assert runtime.enqueue is not None
                runtime.enqueue(workflow_id, run_id)
        except Exception as exc:  # a busy database now is a retry on the next pass
            log.warning("scheduler pass failed: %s", exc)
        if bell is not None:
            bell.wait(interval)
        else:
            stop.wait(interval)


def _listen(runtime: Runtime, stop: threading.Event, state_dir: Path) -> None:
    """On PostgreSQL: what another machine posts rings this machine's workers at once."""
    while not stop.is_set():
        try:
            runtime.store.listen_for_posts(stop.is_set, lambda: ring(state_dir))
        except Exception as exc:  # a lost connection: listen again (the timer covers the gap)
            log.warning("outbox listener: %s", exc)
            stop.wait(1.0)


def _carry_out(runtime: Runtime) -> None:
    """Do what the outbox asks, oldest first; what is done leaves it."""
    done: list[int] = []
    for request in runtime.store.posted():
        try:
            if request["kind"] == "enqueue":
                assert runtime.enqueue is not None
                workflow_id, run_id = str(request["workflow_id"]), int(request["run_id"])
                if isinstance(runtime.enqueue, _EnqueueOnItsQueue):  # its queue read with it
                    runtime.enqueue.on(request.get("run_queue"), workflow_id, run_id)
                else:
                    runtime.enqueue(workflow_id, run_id)
            elif request["kind"] == "recover":
                dead = str(request["workflow_id"])
                if runtime.store.registered(dead):
                    # it started again since: its own start-up recovered its runs, and what
                    # it runs now is not to be handed to anyone else
                    log.info("worker %s is back: its runs are its own again", dead)
                else:
                    taken = _recover(runtime, dead)
                    log.warning("worker %s: its %s unfinished runs handed back to the queue",
                                dead, taken)  # fmt: skip
            else:
                # Sent once, even by two workers or again after a crash before `done`. The id
                # alone is no key: SQLite gives a new request the id of one carried out
                # before (an emptied table starts again at 1), and DBOS would take a second
                # message to the same run (a cancellation after a canary's promote) for the
                # first and drop it. The request's time makes the key its own.
                posted = request["posted_at"].strftime("%Y%m%dT%H%M%S%f")
                DBOS.send(
                    str(request["workflow_id"]), request["message"], request["topic"],
                    idempotency_key=f"shipline-outbox-{request['id']}-{posted}",
                )  # fmt: skip
        except DBOSNonExistentWorkflowError:
            log.info("outbox %s: no workflow %s (dropped)", request["id"], request["workflow_id"])
        except Exception as exc:
            if (
                request["kind"] == "recover"
                or datetime.now(UTC) - request["posted_at"] < OUTBOX_GIVE_UP
            ):
                log.warning("outbox %s not done yet: %s", request["id"], exc)
                continue
            log.error("outbox %s dropped after an hour of failures: %s", request["id"], exc)
        done.append(int(request["id"]))
    runtime.store.done(done)


def shutdown() -> None:
    """Stop the engine in this process (runs stay durable and resume on the next launch)."""
    while _SCHEDULERS:
        stop, threads, bell = _SCHEDULERS.pop()
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        if bell is not None:
            bell.close()
    DBOS.destroy(destroy_registry=False)
    while _CLIENTS:
        owner, client = _CLIENTS.pop()
        owner.enqueue = None
        client.close()
    install(None)


class EngineClient:
    """What the CLI needs from the engine without running it: enqueue runs, send messages."""

    def __init__(self, system_url: str) -> None:
        ensure_system_database(system_url)
        self._client = DBOSClient(system_database_url=system_url, dbos_system_schema="dbos")

    def enqueue(self, workflow_id: str, run_id: int, queue: str = RUN_QUEUE) -> None:
        """Queue run `run_id` for a worker (of `queue`)."""
        from shipline.engine.runtime import WORKFLOW_NAME

        options: Any = {
            "queue_name": queue,
            "workflow_name": WORKFLOW_NAME,
            "workflow_id": workflow_id,
            "app_version": APP_VERSION,
        }
        self._client.enqueue(options, run_id)

    def send(self, workflow_id: str, message: dict[str, Any], topic: str) -> None:
        """Put `message` in a run's inbox."""
        self._client.send(workflow_id, message, topic)

    def ring(self) -> None:
        """Nothing to ring: the scheduler of the worker in this process queues what the store
        recorded at its next pass."""

    def close(self) -> None:
        """Release connections."""
        self._client.destroy()
