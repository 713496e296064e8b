"""The worker's log writer: lines reach the store in order and in batches, `flush` returns once
every line queued before it is written, and a failing store loses no line."""

from __future__ import annotations

import threading

from shipline.engine.logwriter import Line, LogWriter, step_logger


class _Store:
    def __init__(self) -> None:
        self.batches: list[list[Line]] = []
        self.failing = 0  # how many more writes fail
        self.gate = threading.Event()
        self.gate.set()

    def add_logs(self, lines: list[Line]) -> None:
        self.gate.wait(10)
        if self.failing:
            self.failing -= 1
            raise OSError("the store is down")
        self.batches.append(list(lines))

    def lines(self) -> list[str]:
        return [line[4] for batch in self.batches for line in batch]


def test_lines_arrive_in_order_and_batched_while_the_store_is_busy() -> None:
    store = _Store()
    writer = LogWriter(store)
    store.gate.clear()  # the first write blocks: the next lines queue behind it
    log = step_logger(writer, str.upper, 7, "deploy", "api")
    for n in range(50):
        log(f"line {n}")
    store.gate.set()
    assert writer.flush(timeout=10)
    assert store.lines() == [f"LINE {n}" for n in range(50)]  # masked, in order
    assert len(store.batches) < 50  # lines that queued meanwhile went in one write
    assert {(line[0], line[1], line[2]) for b in store.batches for line in b} == {
        (7, "deploy", "api")
    }


def test_a_failing_store_keeps_the_lines_until_it_is_back() -> None:
    store = _Store()
    writer = LogWriter(store, retry_seconds=0.01)
    store.failing = 3
    writer.write(1, "s", "t", "kept")
    assert writer.flush(timeout=10)  # after three failed writes, the fourth
    assert store.lines() == ["kept"]

    store.failing = 10**6
    writer.write(1, "s", "t", "later")
    assert not writer.flush(timeout=0.2)  # still down: flush says so instead of hanging
    store.failing = 0
    assert writer.flush(timeout=10)
    assert store.lines() == ["kept", "later"]


def test_flush_with_nothing_queued_returns_at_once() -> None:
    assert LogWriter(_Store()).flush(timeout=0)
