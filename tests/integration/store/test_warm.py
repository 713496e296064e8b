"""A worker's store, warmed when its front door opens: a look at a run then compiles no
statement (SQLAlchemy keeps each compiled form per engine), so the first command the worker
answers does not pay for compiling them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from shipline.engine.promotion import held_in
from shipline.engine.runs import run_details
from shipline.store.sql import SqlStateStore
from tests.integration.store.conftest import new_run


def _look(store: SqlStateStore, run: int) -> None:
    """What a command waiting for a run reads (its phase, then its document) and what a
    promotion's check of the source environment reads."""
    store.phase_of(run)
    service = SimpleNamespace(
        store=store, get=lambda run_id, spec: store.get_run(run_id, spec=spec)
    )
    run_details(service, run)  # type: ignore[arg-type]
    held_in(store, "dev", {"api": "1"})


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
