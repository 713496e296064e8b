"""Pooled connections are pinged only when they sat idle: one the server dropped while idle is
replaced before use (without the check, the same sequence fails), and a busy pool sends no
pings."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from shipline.store.pool import ping_when_idle
from tests.engine_harness import fresh_database


def _drop(url: str, pid: int) -> None:
    other = sa.create_engine(url, poolclass=sa.NullPool)
    with other.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
    other.dispose()


def _pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


@pytest.mark.parametrize("checked", [True, False])
def test_a_connection_dropped_while_idle_is_replaced(tmp_path: Path, checked: bool) -> None:
    url, _ = fresh_database("postgresql", tmp_path)
    engine = sa.create_engine(url, pool_size=1)
    if checked:
        ping_when_idle(engine, idle_seconds=0.0)
    dropped = _pid(engine)
    _drop(url, dropped)
    if checked:
        assert _pid(engine) != dropped
    else:
        with pytest.raises(sa.exc.OperationalError):
            _pid(engine)
    engine.dispose()


def test_a_busy_pool_sends_no_ping(tmp_path: Path) -> None:
    url, _ = fresh_database("postgresql", tmp_path)
    engine = sa.create_engine(url, pool_size=1)
    ping_when_idle(engine, idle_seconds=60.0)
    sent: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda *args: sent.append(args[2]))  # fmt: skip
    pings: list[object] = []
    real = engine.dialect.do_ping
    engine.dialect.do_ping = lambda dbapi: pings.append(dbapi) or real(dbapi)  # type: ignore[method-assign]
    for _ in range(5):
        _pid(engine)
    assert len(sent) == 5 and pings == []
    engine.dispose()
