"""A run waiting for people holds no worker: it is parked (its workflow ended) and nothing
polls it. With 150 and with 1,000 runs waiting for an approval, the worker holds no more threads
than its pool's bound (the runs it executes at once, however many wait) and runs the same few statements in two seconds (its queue's
and its scheduler's passes, not one per run); a vote wakes exactly its run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from shipline.engine.durable import DEFAULT_CONCURRENCY
from tests.engine_harness import Engine

STAGE = {"name": "deploy", "approval": {"groups": ["cab"]}, "steps": [{"name": "apply"}]}


@contextmanager
def _statements() -> Iterator[list[int]]:
    """Count every SQL statement any engine of this process runs while the block runs."""
    count = [0]

    def seen(*_: object) -> None:
        count[0] += 1

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        yield count
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)


def _wait_all(engine: Engine, runs: list[int]) -> None:
    end = time.monotonic() + 240
    while True:
        records = [engine.store.get_run(r) for r in runs]
        if all(r is not None and r.parked for r in records):
            return
        assert time.monotonic() < end, "not every run parked"
        time.sleep(0.1)


def _idle(window: float = 2.0) -> tuple[int, int]:
    """(threads, statements) of this process over `window` seconds."""
    with _statements() as count:
        time.sleep(window)
    return threading.active_count(), count[0]


def test_waiting_runs_hold_no_thread_and_are_not_polled(engine: Engine) -> None:
    approvers = {"cab": ["casey"]}
    threads_before = threading.active_count()
    few = [engine.start([STAGE], approvers=approvers).id for _ in range(150)]
    _wait_all(engine, few)
    threads_few, statements_few = _idle()
    many = few + [engine.start([STAGE], approvers=approvers).id for _ in range(850)]
    _wait_all(engine, many)
    threads_many, statements_many = _idle()
    import collections

    names = collections.Counter(t.name.rstrip("0123456789_-") for t in threading.enumerate())
    # the worker's pool holds the threads of the runs it executes at once (its concurrency), and
    # of those still finishing as the next ones start: bounded by that, however many runs wait
    # (850 more waiting runs may not add a thread beyond it; one per run would be 1,000)
    bound = threads_before + 2 * DEFAULT_CONCURRENCY
    assert threads_few <= bound and threads_many <= bound, (threads_few, threads_many, names)
    assert threads_many < 150, names  # not a thread per waiting run
    # the queue's and the scheduler's passes only (every 0.05 s here): 850 more waiting runs
    # add no statement; one look per waiting run would add 850 per pass
    assert statements_many <= statements_few * 1.25 + 10, (statements_few, statements_many)

    chosen = many[137]
    engine.service.vote(chosen, "casey", approve=True)
    assert engine.wait(chosen).phase == "succeeded"
    others = [engine.store.get_run(r) for r in many if r != chosen]
    assert all(r is not None and r.phase == "waiting" for r in others)
    for run in many:  # leave the module's engine idle for the next test
        if run != chosen:
            engine.service.cancel(run, "tester")
    for run in many:  # every continuation done before the engine stops
        if run != chosen:
            assert engine.wait(run).phase == "cancelled"
