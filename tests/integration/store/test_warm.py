"""A worker's store, warmed when its front door opens: a look at a run then compiles no
statement (SQLAlchemy keeps each compiled form per engine), so the first command the worker
answers does not pay for compiling them."""

from __future__ import annotations

from typing import Any

from shipline.store.sql import SqlStateStore
from tests.integration.store.conftest import new_run


def _look(store: SqlStateStore, run: int) -> None:
    """What a command waiting for a run and a promotion's check read."""
    store.phase_of(run)
    store.get_run(run, spec=False)
    store.stages(run)
    store.steps(run)
    store.votes(run)
    store.events(run, kind="report")
    store.list_runs(limit=1000)


def _compiled(store: SqlStateStore) -> Any:
    return len(store.reader._compiled_cache)  # type: ignore[attr-defined]


def test_a_look_at_a_run_compiles_nothing_once_the_store_is_warm(store: SqlStateStore) -> None:
    run = new_run(store)
    cold = SqlStateStore.connect(str(store.engine.url.render_as_string(hide_password=False)))
    try:
        before = _compiled(cold)
        _look(cold, run)
        assert _compiled(cold) > before  # a cold store compiles: the check below can fail
    finally:
        cold.close()
    store.warm()
    before = _compiled(store)
    _look(store, run)
    assert _compiled(store) == before
