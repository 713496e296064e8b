"""Ports for replicas and gateways come from outside the range the kernel takes outgoing
connections' local ports from: a probe's connection cannot take one before its listener binds."""

from __future__ import annotations

import socket

import pytest

from shipline.targets.local import supervisor
from shipline.targets.local.supervisor import free_port, listen_ports


@pytest.mark.parametrize(
    ("ephemeral", "span"),
    [
        ((32768, 60999), (10000, 32767)),  # Linux's default: below it
        ((40000, 65535), (10000, 39999)),
        ((10000, 20000), (20001, 65535)),  # above it
        ((1024, 65535), None),  # no room: the kernel picks
        ((10500, 65000), None),
        (None, None),  # not Linux: the kernel picks
    ],
)
def test_listeners_take_ports_outside_the_ephemeral_range(
    ephemeral: tuple[int, int] | None, span: tuple[int, int] | None
) -> None:
    assert listen_ports(ephemeral) == span


def test_a_free_port_is_in_the_span_and_nothing_listens_there() -> None:
    span = supervisor._SPAN
    for _ in range(20):
        port = free_port()
        if span is not None:
            assert span[0] <= port <= span[1]
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
