"""Rollouts queued behind one another (`OrderedApply`): which changes a target has under way and
how each ended, so that a rollout queued behind another one starts the moment that one is made,
and not at all when it failed."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shipline.errors import Withdrawn

GRACE_SECONDS = 10.0  # how long a change named but neither under way nor made is waited for
KEPT = 4096  # how many ended changes are remembered (a queued rollout follows a recent one)


class Sequencer:
    """The changes a target is making and has made; `made_before(change)`: whether the target
    recorded `change` before this sequencer knew of it (a revision from before a restart)."""

    def __init__(self, made_before: Callable[[str], bool]) -> None:
        self._changed = threading.Condition()
        self._under_way: dict[str, int] = {}
        self._ended: OrderedDict[str, bool] = OrderedDict()
        self._made_before = made_before

    @contextmanager
    def making(self, change: str | None) -> Iterator[None]:
        """Around an apply under `change`: under way inside, then made (no exception) or
        failed; whatever waits for it is told at once."""
        if change is None:
            yield
            return
        with self._changed:
            self._under_way[change] = self._under_way.get(change, 0) + 1
        made = False
        try:
            yield
            made = True
        finally:
            with self._changed:
                left = self._under_way.pop(change) - 1
                if left:
                    self._under_way[change] = left
                self._ended[change] = made
                self._ended.move_to_end(change)
                while len(self._ended) > KEPT:
                    self._ended.popitem(last=False)
                self._changed.notify_all()

    def wait_for(self, after: str, *, grace: float = GRACE_SECONDS) -> None:
        """Return once change `after` is made. `Withdrawn` when it failed, or when it was
        neither under way nor made within `grace` seconds (its caller never sent it)."""
        until = time.monotonic() + grace
        with self._changed:
            while True:
                if after in self._under_way:
                    self._changed.wait()
                    continue
                ended = self._ended.get(after)
                if ended is True or (ended is None and self._made_before(after)):
                    return
                if ended is False:
                    raise Withdrawn(
                        f"not started: the change it was queued behind ({after}) did not succeed"
                    )
                left = until - time.monotonic()
                if left <= 0:
                    raise Withdrawn(
                        f"not started: the change it was queued behind ({after}) never came"
                    )
                self._changed.wait(min(left, 0.25))  # made elsewhere: looked at again
