"""The store tests' store, on SQLite and on PostgreSQL, and a run to put in it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipline.store.sql import SqlStateStore
from tests.engine_harness import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStateStore]:
    url, _ = fresh_database(request.param, tmp_path)
    opened = SqlStateStore.connect(url)
    yield opened
    opened.close()


def new_run(store: SqlStateStore, environment: str = "dev") -> int:
    """A deploy run of `api` recorded in `store`: its id."""
    return store.create_run(pipeline="deploy", environment=environment, services={"api": "1"},
                            params={}, spec={}, requested_by="ann").id  # fmt: skip
