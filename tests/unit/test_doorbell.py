"""The workers' doorbell: a ring reaches every worker listening for the state folder, and
nobody else; a worker that is not listening is simply not rung."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from shipline.doorbell import FOLLOWERS, Doorbell, Follower, ring, ring_followers


def test_a_ring_wakes_the_listening_worker_at_once(tmp_path: Path) -> None:
    (tmp_path / "worker-w1.lock").touch()
    bell = Doorbell(tmp_path, "w1")
    try:
        assert bell.wait(0.01) is False  # nothing yet
        woke: list[float] = []

        def listen() -> None:
            began = time.monotonic()
            if bell.wait(30):
                woke.append(time.monotonic() - began)

        thread = threading.Thread(target=listen)
        thread.start()
        time.sleep(0.1)
        assert ring(tmp_path) == 1
        thread.join(timeout=10)
        assert woke and woke[0] < 10  # woken by the ring, not by the 30 s timeout
        assert ring(tmp_path) == 1 and ring(tmp_path) == 1
        assert bell.wait(1) is True  # both rings taken at once
        assert bell.wait(0.01) is False
    finally:
        bell.close()


def test_only_the_workers_of_this_state_folder_are_rung(tmp_path: Path) -> None:
    mine, other = tmp_path / "mine", tmp_path / "other"
    for folder in (mine, other):
        folder.mkdir()
        (folder / "worker-w1.lock").touch()
    bell = Doorbell(other, "w1")
    try:
        assert ring(mine) == 0  # no worker listens for this folder
        assert bell.wait(0.05) is False
    finally:
        bell.close()


def test_a_second_listener_of_one_name_falls_back_to_its_timer(tmp_path: Path) -> None:
    first, second = Doorbell(tmp_path, "w1"), Doorbell(tmp_path, "w1")
    try:
        began = time.monotonic()
        assert second.wait(0.05) is False
        # it does wait out its timer: returning at once would make its scheduler spin
        assert 0.05 <= time.monotonic() - began < 5
    finally:
        first.close()
        second.close()


def test_a_follower_is_rung_for_its_run_only_and_leaves_no_name(tmp_path: Path) -> None:
    with Follower(tmp_path, 7) as follower:
        assert follower.wait(0.01) is False
        assert ring_followers(tmp_path, 8) == 0  # another run's move
        assert follower.wait(0.01) is False
        assert ring_followers(tmp_path, 7) == 1
        assert follower.wait(5) is True
    assert list((tmp_path / FOLLOWERS).iterdir()) == []
    assert ring_followers(tmp_path, 7) == 0


def test_a_follower_of_the_end_only_is_rung_when_the_run_ends_not_when_it_moves(
    tmp_path: Path,
) -> None:
    with Follower(tmp_path, 7, ends_only=True) as follower:
        assert ring_followers(tmp_path, 7) == 0  # a stage moved
        assert follower.wait(0.01) is False
        assert ring_followers(tmp_path, 7, ended=True) == 1
        assert follower.wait(5) is True
    assert list((tmp_path / FOLLOWERS).iterdir()) == []


def test_a_follower_that_died_without_tidying_up_is_forgotten(tmp_path: Path) -> None:
    (tmp_path / FOLLOWERS).mkdir()
    (tmp_path / FOLLOWERS / "7-999999").touch()  # a killed command's name, nobody listening
    with Follower(tmp_path, 7) as follower:
        assert ring_followers(tmp_path, 7) == 1  # the live one
        assert follower.wait(5) is True
        assert [p.name for p in (tmp_path / FOLLOWERS).iterdir()] == [f"7-{os.getpid()}"]
