"""`list_runs` of an environment, on SQLite and PostgreSQL: the runs that name it, and the
promotions that moved through it (`--env qa` lists the promotion dev -> qa, staging)."""

from __future__ import annotations

import pytest

from shipline.store.sql import SqlStateStore
from tests.integration.store.conftest import LADDER_LISTS, record_ladder


@pytest.mark.parametrize(("environment", "limit", "expected"), LADDER_LISTS)
def test_a_promotion_is_listed_under_each_environment_it_moved_through(
    store: SqlStateStore, environment: str, limit: int, expected: list[int]
) -> None:
    record_ladder(store)
    assert [r.id for r in store.list_runs(limit=limit, environment=environment)] == expected
