"""The audit trail in the state store: the hash chain detects changed, removed and reordered
records and a cut tail; writers in several processes (as CLI and workers are) keep one chain;
an audit file of an earlier version is taken over. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shipline.domain.audit import GENESIS, chained, digest, rechained
from shipline.store.audit import SqlAuditLog
from shipline.store.sql import SqlStateStore
from tests.engine_harness import BACKENDS, TEST_AUDIT_KEY, fresh_database


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return fresh_database(request.param, tmp_path)[0]


def _log(url: str, count: int = 4) -> SqlAuditLog:
    log = SqlAuditLog(SqlStateStore.connect(url), TEST_AUDIT_KEY)
    for i in range(count):
        log.append("ann", "secret.set", name=f"S{i}", run=i)
    return log


def _sql(log: SqlAuditLog, statement: str) -> None:
    with log.store.engine.begin() as conn:
        conn.execute(sa.text(statement))


def test_intact_chain(url: str) -> None:
    log = _log(url)
    assert log.verify() == []
    assert [r["seq"] for r in log.records()] == [1, 2, 3, 4]
    assert log.records()[2]["details"] == {"name": "S2", "run": 2}


def test_changed_record_is_detected(url: str) -> None:
    log = _log(url)
    _sql(log, "UPDATE audit SET actor = 'mallory' WHERE seq = 2")
    assert [p.line for p in log.verify()] == [2]


def test_changed_details_are_detected(url: str) -> None:
    log = _log(url)
    _sql(log, """UPDATE audit SET details = '{"name": "S9", "run": 1}' WHERE seq = 2""")
    assert [(p.line, p.message) for p in log.verify()] == [(2, "record was changed")]


def test_removed_record_is_detected(url: str) -> None:
    log = _log(url)
    _sql(log, "DELETE FROM audit WHERE seq = 3")
    problems = log.verify()
    assert problems and problems[0].line == 3


def test_removed_last_record_is_detected_through_the_head(url: str) -> None:
    log = _log(url)
    _sql(log, "DELETE FROM audit WHERE seq = 4")
    problems = log.verify()
    assert [p.line for p in problems] == [3]
    assert "record 4 was written" in problems[0].message


def test_removed_head_is_detected(url: str) -> None:
    log = _log(url)
    _sql(log, "DELETE FROM audit_head")
    assert any("head row was removed" in p.message for p in log.verify())


def test_details_that_are_not_json(url: str) -> None:
    log = _log(url, 2)
    _sql(log, "UPDATE audit SET details = 'not json' WHERE seq = 2")
    assert [(p.line, p.message) for p in log.verify()] == [(2, "record was changed")]


def _append_many(url: str, who: str, count: int) -> None:
    log = SqlAuditLog(SqlStateStore.connect(url, migrate=False), TEST_AUDIT_KEY)
    for i in range(count):
        log.append(who, "run.start", run=i)


def test_writers_in_several_processes_keep_one_chain(url: str) -> None:
    SqlStateStore.connect(url).close()  # migrated once, before the writers start
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_many, args=(url, f"w{n}", 25)) for n in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    log = SqlAuditLog(SqlStateStore.connect(url), TEST_AUDIT_KEY)
    records = log.records()
    assert len(records) == 100 and [r["seq"] for r in records] == list(range(1, 101))
    assert log.verify() == []


def test_an_earlier_audit_file_is_taken_over_once(url: str, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    previous, lines = "0" * 64, []
    for seq in (1, 2):
        record = chained(previous, seq, "2026-01-01T00:00:00.000+00:00", "ann", "vars.reveal", {})
        lines.append(json.dumps(record, sort_keys=True))
        previous = record["hash"]
    path.write_text("\n".join(lines) + "\n")
    log = SqlAuditLog(SqlStateStore.connect(url), TEST_AUDIT_KEY)
    assert log.import_file(path) == 2
    assert not path.exists() and path.with_name("audit.jsonl.imported").exists()
    log.append("bob", "run.start", run=1)
    assert [r["seq"] for r in log.records()] == [1, 2, 3] and log.verify() == []
    path.write_text(lines[0] + "\n")
    assert log.import_file(path) == 0  # the trail is not empty any more


# --- a database writer without the key: every tampering is detected -----------------------------


def _rewrite(log: SqlAuditLog, records: list[dict[str, Any]]) -> None:
    with log.store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit"))
        for r in records:
            conn.execute(
                sa.text(
                    "INSERT INTO audit (seq, time, actor, action, details, prev, hash)"
                    " VALUES (:seq, :time, :actor, :action, :details, :prev, :hash)"
                ),
                {**{k: r[k] for k in ("seq", "time", "actor", "action", "prev", "hash")},
                 "details": json.dumps(r["details"], sort_keys=True)},
            )  # fmt: skip
        last = records[-1] if records else {"seq": 0, "hash": GENESIS}
        conn.execute(
            sa.text("UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1"),
            {"seq": last["seq"], "hash": last["hash"]},
        )


def _edited(log: SqlAuditLog) -> list[dict[str, Any]]:
    records = [dict(r) for r in log.records()]
    for r in records:
        r.pop("id", None)
    records[1]["actor"] = "mallory"
    return records


TAMPERINGS: dict[str, Any] = {
    "rechain-plain-sha256": lambda log: _rewrite(log, rechained_plain(_edited(log))),
    "rechain-with-a-guessed-key": lambda log: _rewrite(log, rechained(_edited(log), b"guess" * 8)),
    "rewind-the-head": lambda log: (
        _sql(log, "DELETE FROM audit WHERE seq > 2"),
        _sql(log, "UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit WHERE seq = 2)"),
    ),
    "delete-everything": lambda log: (
        _sql(log, "DELETE FROM audit"),
        _sql(log, f"UPDATE audit_head SET seq = 0, hash = '{GENESIS}'"),
    ),
    "swap-two-records": lambda log: _rewrite(
        log, [{**r, "seq": i + 1} for i, r in enumerate(log.records()[j] for j in (0, 2, 1, 3))]
    ),
    "replace-the-last-record": lambda log: _rewrite(
        log, [*log.records()[:3], {**log.records()[3], "action": "secret.rm"}]
    ),
}


def rechained_plain(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out, previous = [], GENESIS
    for r in records:
        body = {**{k: v for k, v in r.items() if k != "hash"}, "prev": previous}
        previous = digest(previous, body)
        out.append({**body, "hash": previous})
    return out


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS), ids=sorted(TAMPERINGS))
def test_a_database_writer_without_the_key_is_detected(url: str, tampering: str) -> None:
    log = _log(url)
    exported = log.head()
    TAMPERINGS[tampering](log)
    problems = log.verify(exported)
    assert problems, f"{tampering} passed verification"


def test_the_chain_is_keyed_and_a_plain_chain_is_sealed_once(url: str) -> None:
    plain = SqlAuditLog(SqlStateStore.connect(url), TEST_AUDIT_KEY)
    records = rechained_plain([
        {"seq": i, "time": "2026-01-01T00:00:00.000+00:00", "actor": "ann", "action": "a",
         "details": {"n": i}}
        for i in (1, 2, 3)
    ])  # fmt: skip
    _rewrite(plain, records)  # as an earlier shipline wrote it: plain SHA-256
    assert plain.verify(), "a plain chain is not accepted under a key"
    assert plain.reseal() == 3
    assert plain.verify() == []
    assert plain.reseal() == 0  # once
    plain.append("bob", "run.start", run=1)
    assert plain.verify() == [] and plain.head()[0] == 4
    other = SqlAuditLog(plain.store, b"another key" * 4)
    assert other.verify(), "the chain verifies only under its own key"
