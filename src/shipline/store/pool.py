"""Connection pools that check a connection only when it may have gone stale.

SQLAlchemy's `pool_pre_ping` sends a statement before every checkout. A busy worker checks a
connection out for every store write and every durable checkpoint, so the pings were a quarter of
all the statements it sent. Here a connection is pinged only when it sat idle in the pool longer
than `IDLE_SECONDS`: under load none is, and a connection the server dropped while idle (a
restart, an idle timeout) is still replaced before it is used.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

IDLE_SECONDS = 5.0
_RETURNED = "shipline.returned"


def ping_when_idle(engine: Engine, idle_seconds: float = IDLE_SECONDS) -> None:
    """Ping a connection at checkout only if it was idle over `idle_seconds`; a connection
    that fails the ping is discarded and the pool hands out a fresh one. Use with
    `pool_pre_ping=False`."""

    @sa.event.listens_for(engine, "checkin")
    def _returned(_dbapi: Any, record: Any) -> None:
        if record is not None:
            record.info[_RETURNED] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _check(dbapi: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED)
        if returned is None or time.monotonic() - returned < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as exc:
            raise sa.exc.DisconnectionError(f"a pooled connection went stale: {exc}") from exc
