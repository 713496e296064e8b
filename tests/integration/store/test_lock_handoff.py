"""A lock's hand-off loses no waiter: a run that queues while the holder leaves is either
seen by the leaving run (and woken) or finds the lock free, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from shipline.store.sql import SqlStateStore
from tests.integration.store.conftest import new_run

KEY = "qa/api"


def test_a_run_queueing_while_the_holder_leaves_is_woken(store: SqlStateStore) -> None:
    holder, waiter = new_run(store, "qa"), new_run(store, "qa")
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
