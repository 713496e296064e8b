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


# A deploy to dev, a promotion dev -> qa, staging, a deploy to qa, a promotion qa -> staging, a
# deploy to dev, a promotion of a release named like an environment: runs 1-6.
LADDER_RUNS = [
    ("deploy", "dev", {}),
    ("promote", "staging", {"environments": ["qa", "staging"], "from": "dev"}),
    ("deploy", "qa", {}),
    ("promote", "staging", {"environments": ["staging"], "from": "qa"}),
    ("deploy", "dev", {"reason": "dev_fix 100%"}),
    ("promote", "staging", {"environments": ["staging"], "from": "qa", "release": "qa"}),
]
# (environment, limit, the runs `list_runs` gives)
LADDER_LISTS = [
    ("qa", 50, [3, 2]),  # its own deploy, and the promotion that moved through it
    ("qa", 1, [3]),
    ("dev", 50, [5, 1]),  # not the promotions from dev, nor the release named qa
    ("dev", 1, [5]),
    ("dev", 2, [5, 1]),  # a second page: run 2 matched the text, not the environment
    ("staging", 2, [6, 4]),
    ("uat", 50, []),
]


def record_ladder(store: SqlStateStore) -> None:
    """The runs of LADDER_RUNS, in `store`."""
    for pipeline, environment, params in LADDER_RUNS:
        store.create_run(pipeline=pipeline, environment=environment, services={"api": "1"},
                         params=params, spec={}, requested_by="ann")  # fmt: skip
