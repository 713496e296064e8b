"""The local target's port book: a port handed to a replica that does not listen yet is never
handed out again, to the next replica or to a gateway, while it may still start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shipline.errors import TargetError
from shipline.targets.local.supervisor import PortBook


def _kernel(ports: list[int]) -> Iterator[int]:
    """What the kernel gives, one bind after another: a port nothing holds, even one just
    given to a process that has not bound it yet."""
    yield from ports


def test_a_port_given_is_not_given_again_while_it_is_held() -> None:
    kernel = _kernel([40001, 40001, 40003, 40001, 40005])
    book = PortBook(hold=60, find=lambda: next(kernel))
    assert [book.take(), book.take(), book.take()] == [40001, 40003, 40005]


def test_a_port_is_given_again_once_its_hold_is_over(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("shipline.targets.local.supervisor.time.monotonic", lambda: clock[0])
    book = PortBook(hold=60, find=lambda: 40001)
    assert book.take() == 40001
    clock[0] += 61
    assert book.take() == 40001


def test_a_kernel_that_gives_only_held_ports_is_an_error_not_a_hang() -> None:
    book = PortBook(hold=60, find=lambda: 40001)
    book.take()
    with pytest.raises(TargetError, match="no free TCP port"):
        book.take()
