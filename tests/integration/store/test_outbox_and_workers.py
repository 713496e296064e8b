"""The store's outbox and workers table, on SQLite and PostgreSQL: a run is queued with its
record; requests are read oldest first and leave when done; a post is heard on PostgreSQL by
a listener on another connection; a silent worker is adopted by exactly one caller, and a
worker taken for dead learns it at its next beat."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shipline.store.sql import SqlStateStore
from tests.integration.store.conftest import new_run


def test_a_run_is_queued_with_its_record(store: SqlStateStore) -> None:
    first, second = new_run(store), new_run(store)
    posted = store.posted()
    assert [(p["kind"], p["workflow_id"], p["run_id"]) for p in posted] == [
        ("enqueue", f"shipline-run-{first}", first), ("enqueue", f"shipline-run-{second}", second)
    ]  # fmt: skip
    store.post("send", f"shipline-run-{first}", None, "inbox", {"type": "vote"})
    later = store.posted()
    assert later[-1]["message"] == {"type": "vote"} and later[-1]["topic"] == "inbox"
    store.done([posted[0]["id"]])
    store.done([posted[0]["id"]])  # done twice (two workers): no harm
    assert [p["run_id"] for p in store.posted()] == [second, None]


def test_a_request_comes_with_its_runs_queue(store: SqlStateStore) -> None:
    anyone = new_run(store)
    pinned = store.create_run(pipeline="deploy", environment="local", services={"api": "1"},
                              params={}, spec={}, requested_by="ann", queue="local-m1").id  # fmt: skip
    store.post("recover", "w1", None)
    posted = store.posted()
    assert [(p["run_id"], p["run_queue"]) for p in posted] == [
        (anyone, None), (pinned, "local-m1"), (None, None)
    ]  # fmt: skip


def test_a_post_is_heard_on_another_connection(store: SqlStateStore, tmp_path: Path) -> None:
    if store.sqlite:
        store.listen_for_posts(lambda: False, lambda: None)  # returns: one machine, no channel
        return
    other = SqlStateStore.connect(str(store.engine.url.render_as_string(hide_password=False)))
    heard = threading.Event()
    stop = threading.Event()
    listener = threading.Thread(
        target=store.listen_for_posts, args=(stop.is_set, heard.set), daemon=True
    )
    listener.start()
    try:
        for _ in range(50):  # until the listener is listening, a post may go unheard
            other.post("send", "shipline-run-1", None, "inbox", {"type": "vote"})
            if heard.wait(0.2):
                break
        assert heard.is_set()
    finally:
        stop.set()
        listener.join(timeout=10)
        other.close()


def test_a_silent_worker_is_adopted_once(store: SqlStateStore) -> None:
    store.register_worker("w1", "host-a", 101, None)
    store.register_worker("w2", "host-b", 102, "shipline-local-x")
    assert store.beat("w1") and store.beat("w2")
    assert store.silent_workers(datetime.now(UTC) - timedelta(minutes=1)) == []
    silent = {w["name"]: w for w in store.silent_workers(datetime.now(UTC) + timedelta(seconds=1))}
    assert set(silent) == {"w1", "w2"} and silent["w2"]["local_queue"] == "shipline-local-x"
    seen = silent["w1"]["seen_at"]
    assert store.adopt("w1", seen) is True
    assert store.adopt("w1", seen) is False  # a second adopter gets nothing
    # the adoption asked, in its own transaction, for w1's runs to be queued again: once
    assert [(r["kind"], r["workflow_id"]) for r in store.posted()] == [("recover", "w1")]
    assert store.beat("w1") is False  # w1, only paused, learns it was taken for dead
    assert store.registered("w1") is False and store.registered("w2") is True
    assert store.beat("w2") is True
    assert store.adopt("w2", seen - timedelta(days=1)) is False  # seen since: not adopted
    store.register_worker("w1", "host-a", 103, None)  # restarted with its id
    assert store.beat("w1") is True
    assert store.registered("w1") is True
