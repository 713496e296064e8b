"""The standard-library reader of the SQLite store gives exactly the records the SQLAlchemy
store gives, and stands aside (None) where it must: no store yet, a schema that needs
migrating, a URL that is not a SQLite file."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shipline.engine.reads import recent_runs, run_reader
from shipline.store.lite import SqliteRunReader, sqlite_path
from shipline.store.sql import SqlStateStore
from tests.integration.store.conftest import LADDER_LISTS, record_ladder


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    store = SqlStateStore.connect(f"sqlite:///{path}")
    when = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
    for n in range(7):
        run = store.create_run(
            pipeline="promote" if n == 3 else "deploy",
            environment=None if n == 3 else ("qa" if n % 2 else "dev"),
            services={"api": f"1.0.{n}", "ünï": "2"},
            params={"release": None if n % 3 else f"r{n}", "environments": ["qa", "staging"]},
            spec={"stages": [{"name": "deploy", "n": n}]},
            requested_by=f"user{n}",
            emergency_reason="hotfix" if n == 5 else None,
        )
        if n == 1:
            store.update_run(run.id, phase="succeeded", started_at=when,
                             finished_at=when + timedelta(seconds=3.5), reason="done")  # fmt: skip
        if n == 2:
            store.request_cancel(run.id, "superseded by run 4")
        if n == 4:
            store.park(run.id, run.workflow_id, "approve", when + timedelta(hours=2))
        if n == 6:
            store.wake(run.id)  # woken while it runs: noted for when it would park
    store.close()
    return path


@pytest.mark.parametrize(
    ("limit", "environment"), [(50, None), (3, None), (50, "qa"), (1, "dev"), (50, "nowhere")]
)
def test_same_records_as_the_store(store_file: Path, limit: int, environment: str | None) -> None:
    store = SqlStateStore.connect(f"sqlite:///{store_file}", migrate=False)
    reader = SqliteRunReader.open(store_file)
    assert reader is not None
    try:
        assert reader.list_runs(limit=limit, environment=environment) == store.list_runs(
            limit=limit, environment=environment
        )
    finally:
        reader.close()
        store.close()


@pytest.fixture
def ladder_file(tmp_path: Path) -> Path:
    path = tmp_path / "ladder.db"
    store = SqlStateStore.connect(f"sqlite:///{path}")
    record_ladder(store)
    store.close()
    return path


@pytest.mark.parametrize(("environment", "limit", "expected"), LADDER_LISTS)
def test_a_promotion_is_listed_under_each_environment_it_moved_through(
    ladder_file: Path, environment: str, limit: int, expected: list[int]
) -> None:
    store = SqlStateStore.connect(f"sqlite:///{ladder_file}", migrate=False)
    reader = SqliteRunReader.open(ladder_file)
    assert reader is not None
    try:
        mine = [r.id for r in reader.list_runs(limit=limit, environment=environment)]
        theirs = [r.id for r in store.list_runs(limit=limit, environment=environment)]
    finally:
        reader.close()
        store.close()
    assert mine == theirs == expected


def test_the_records_carry_what_was_written(store_file: Path) -> None:
    runs = {r.id: r for r in recent_runs(f"sqlite:///{store_file}", limit=50)}
    assert runs[2].finished_at == datetime(2026, 11, 27, 6, 0, 3, 500000, tzinfo=UTC)
    assert runs[3].cancel_requested and runs[3].cancel_reason == "superseded by run 4"
    assert runs[4].environment is None and runs[4].pipeline == "promote"
    assert runs[5].parked == "approve" and runs[5].wake_at is not None
    assert runs[7].wake_pending is True
    assert runs[1].services == {"api": "1.0.0", "ünï": "2"}


def test_stands_aside_when_it_must(tmp_path: Path, store_file: Path) -> None:
    assert SqliteRunReader.open(tmp_path / "none.db") is None
    assert sqlite_path("postgresql+psycopg://u@h/db") is None
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path(f"sqlite:///{store_file}") == store_file
    old = tmp_path / "old.db"
    old.write_bytes(store_file.read_bytes())
    with sqlite3.connect(old) as db:
        db.execute("UPDATE alembic_version SET version_num = '0000'")
    assert SqliteRunReader.open(old) is None  # not at the newest schema
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a file without a schema yet
    assert SqliteRunReader.open(empty) is None
    fallback = run_reader(f"sqlite:///{empty}")  # the store, which migrates it first
    try:
        assert isinstance(fallback, SqlStateStore)
        assert fallback.list_runs() == []
    finally:
        fallback.close()


def test_reads_only(store_file: Path) -> None:
    reader = SqliteRunReader.open(store_file)
    assert reader is not None
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader._db.execute("DELETE FROM runs")
    reader.close()
