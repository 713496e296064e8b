"""A lock's hand-off loses no waiter: a run that queues while the holder leaves is either
seen by the leaving run (and woken) or finds the lock free, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipline.store.sql import SqlStateStore
from tests.engine_harness import fresh_database

KEY = "qa/api"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStateStore]:
    url, _ = fresh_database(request.param, tmp_path)
    opened = SqlStateStore.connect(url)
    yield opened
    opened.close()


def _run(store: SqlStateStore) -> int:
    return store.create_run(pipeline="deploy", environment="qa", services={"api": "1"},
                            params={}, spec={}, requested_by="ann").id  # fmt: skip


def test_a_run_queueing_while_the_holder_leaves_is_woken(store: SqlStateStore) -> None:
    holder, waiter = _run(store), _run(store)
    with store.lock_transaction([KEY]) as conn:
        store.set_lock_state(conn, holder, [KEY], "holding")
    woken: list[list[int]] = []
    with store.lock_transaction([KEY]) as conn:  # the waiter decides, not yet committed
        store.set_lock_state(conn, waiter, [KEY], "queued")
        assert [e["state"] for e in store.lock_entries(conn, KEY)] == ["holding", "queued"]
        leaving = threading.Thread(target=lambda: woken.append(store.leave_locks(holder)))
        leaving.start()
        leaving.join(0.5)
        assert leaving.is_alive(), "the holder left without waiting for the lock decision"
    leaving.join(30)
    assert woken == [[waiter]]
    assert [(e["run_id"], e["state"]) for e in store.lock_holders()] == [(waiter, "queued")]
