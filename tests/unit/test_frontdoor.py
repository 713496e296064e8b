"""The front door of a state folder's workers: a request reaches the worker holding it and its
answer comes back; nobody at the door is None (the command does the work itself); a peer of
another user is not served; the door passes to another worker when its holder stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from shipline import frontdoor


@contextmanager
def _held(state_dir: Path, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=frontdoor.keep, args=(state_dir, stop, answer), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def _knock_until_answered(state_dir: Path, request: dict[str, Any]) -> dict[str, Any]:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        found = frontdoor.knock(state_dir, request)
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError("nobody ever answered")


def test_nobody_at_the_door_is_none(tmp_path: Path) -> None:
    assert frontdoor.knock(tmp_path, {"op": "deploy"}) is None


def test_a_request_is_answered_by_the_worker_holding_the_door(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request)
        return {"run": 7, "phase": "pending"}

    with _held(tmp_path, answer):
        assert _knock_until_answered(tmp_path, {"op": "deploy", "args": {"env": "qa"}}) == {
            "run": 7, "phase": "pending",
        }  # fmt: skip
    assert seen == [{"op": "deploy", "args": {"env": "qa"}}]
    assert frontdoor.knock(tmp_path / "other", {"op": "deploy"}) is None  # another folder


def test_a_peer_of_another_user_is_not_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[dict[str, Any]] = []
    monkeypatch.setattr(frontdoor, "_peer_uid", lambda _conn: 4242)
    with _held(tmp_path, lambda r: asked.append(r) or {"run": 1}):
        answer = _knock_until_answered(tmp_path, {"op": "deploy"})
    assert answer == {"fallback": "another user"}  # not acted on: they submit by themselves
    assert asked == []


def test_the_door_passes_to_another_worker_when_its_holder_stops(tmp_path: Path) -> None:
    with ExitStack() as first:
        first.enter_context(_held(tmp_path, lambda _r: {"who": "first"}))
        assert _knock_until_answered(tmp_path, {})["who"] == "first"
        with _held(tmp_path, lambda _r: {"who": "second"}):
            assert frontdoor.knock(tmp_path, {}) == {"who": "first"}  # still the holder's
            first.close()  # the holder stops; the other takes the door at its next try
            end = time.monotonic() + 10
            while (found := frontdoor.knock(tmp_path, {})) is None or found["who"] != "second":
                assert time.monotonic() < end, "the door was never taken over"
                time.sleep(0.05)
