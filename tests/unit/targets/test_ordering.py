"""The sequencer behind `OrderedApply`: a change waited for starts what waits once it is made;
one that failed, or never came, withdraws it."""

from __future__ import annotations

import threading

import pytest

from shipline.errors import Withdrawn
from shipline.targets.ordering import Sequencer

WAIT = 20.0  # seconds a waiter is given (a bug, not a timing)


def _waiter(sequence: Sequencer, after: str, grace: float = 10.0) -> tuple[threading.Thread, list[object]]:  # fmt: skip
    ended: list[object] = []

    def wait() -> None:
        try:
            sequence.wait_for(after, grace=grace)
            ended.append("started")
        except Withdrawn as exc:
            ended.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    return thread, ended


def test_a_waiter_starts_once_the_change_it_follows_is_made() -> None:
    sequence = Sequencer(lambda change: False)
    with sequence.making("a"):
        thread, ended = _waiter(sequence, "a")
        thread.join(0.2)
        assert ended == []  # under way: it waits
    thread.join(WAIT)
    assert ended == ["started"]


def test_a_waiter_is_withdrawn_when_the_change_fails() -> None:
    sequence = Sequencer(lambda change: False)
    thread, ended = _waiter(sequence, "a")
    with pytest.raises(RuntimeError), sequence.making("a"):
        raise RuntimeError("not healthy")
    thread.join(WAIT)
    assert len(ended) == 1 and isinstance(ended[0], Withdrawn)
    assert "did not succeed" in str(ended[0])


def test_a_change_that_never_comes_withdraws_its_waiter_after_the_grace() -> None:
    sequence = Sequencer(lambda change: False)
    thread, ended = _waiter(sequence, "never", grace=0.2)
    thread.join(WAIT)
    assert len(ended) == 1 and isinstance(ended[0], Withdrawn)
    assert "never came" in str(ended[0])


def test_a_change_made_before_the_sequencer_knew_starts_its_waiter_at_once() -> None:
    sequence = Sequencer(lambda change: change == "from-before-a-restart")
    sequence.wait_for("from-before-a-restart", grace=0.0)


def test_a_failed_change_tried_again_and_made_starts_its_waiter() -> None:
    sequence = Sequencer(lambda change: False)
    with pytest.raises(RuntimeError), sequence.making("a"):
        raise RuntimeError("broke")
    with sequence.making("a"):
        thread, ended = _waiter(sequence, "a")
    thread.join(WAIT)
    assert ended == ["started"]
