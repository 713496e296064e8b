"""The audit trail in the state store: append-only, MAC-chained (see `shipline.domain.audit`).

The key lives outside the database: SHIPLINE_AUDIT_KEY, or `audit.key` (0600) in the state
folder, made on first use. Appends are serialized by the database (PostgreSQL: the head row
locked FOR UPDATE; SQLite: the write lock taken first), so every worker and CLI sharing a
database writes one unbroken chain. A record is committed before `append` returns.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from shipline.domain.audit import GENESIS, AuditProblem, chained, rechained, verify_chain
from shipline.errors import StoreError
from shipline.process import exclusive
from shipline.store.schema import audit, audit_head
from shipline.store.sql import SqlStateStore

KEY_ENV = "SHIPLINE_AUDIT_KEY"


def audit_key(state_dir: Path, environ: Mapping[str, str]) -> tuple[bytes, bool]:
    """The audit MAC key and whether it was made just now (SHIPLINE_AUDIT_KEY, else the key file,
    created 0600 on first use by one process while the others wait)."""
    if environ.get(KEY_ENV):
        return environ[KEY_ENV].encode(), False
    path = state_dir / "audit.key"
    with exclusive(state_dir / "audit.key.lock"):
        if path.exists():
            return path.read_bytes().strip(), False
        key = secrets.token_hex(32).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        return key, True


class SqlAuditLog:
    """The project's audit trail, chained under `key`."""

    def __init__(self, store: SqlStateStore, key: bytes) -> None:
        self.store = store
        self._key = key

    @property
    def where(self) -> str:
        """Where the records are (the database, without its password)."""
        return f"audit trail in {self.store.engine.url.render_as_string(hide_password=True)}"

    def append(self, actor: str, action: str, **details: Any) -> dict[str, Any]:
        """Add a record (committed when this returns) and return it."""
        try:
            with self.store.engine.begin() as conn:
                if self.store.sqlite:
                    conn.exec_driver_sql("UPDATE audit_head SET seq = seq WHERE 0")  # write lock
                head = conn.execute(
                    sa.select(audit_head.c.seq, audit_head.c.hash)
                    .where(audit_head.c.id == 1)
                    .with_for_update()
                ).one()
                record = chained(
                    head.hash,
                    head.seq + 1,
                    datetime.now(UTC).isoformat(timespec="milliseconds"),
                    actor,
                    action,
                    json.loads(json.dumps(details, default=str)),  # as it will read back
                    self._key,
                )
                conn.execute(audit.insert().values(**self._row(record)))
                conn.execute(
                    audit_head.update()
                    .where(audit_head.c.id == 1)
                    .values(seq=record["seq"], hash=record["hash"])
                )
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"audit write failed: {type(exc).__name__}") from exc
        return record

    @staticmethod
    def _row(record: dict[str, Any]) -> dict[str, Any]:
        return {
            **{k: record[k] for k in ("seq", "time", "actor", "action", "prev", "hash")},
            "details": json.dumps(record["details"], sort_keys=True),
        }

    def _rows(self) -> tuple[list[dict[str, Any] | None], tuple[int, str] | None]:
        try:
            with self.store.engine.connect() as conn:
                rows = conn.execute(audit.select().order_by(audit.c.seq)).mappings().all()
                head = conn.execute(
                    sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
                ).first()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"audit read failed: {type(exc).__name__}") from exc
        records: list[dict[str, Any] | None] = []
        for row in rows:
            try:
                details: Any = json.loads(row["details"])
            except (TypeError, ValueError):
                details = row["details"]  # not what was hashed: the chain shows it as changed
            records.append({**dict(row), "details": details})
        return records, (int(head.seq), str(head.hash)) if head is not None else None

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        return [r for r in self._rows()[0] if r is not None]

    def head(self) -> tuple[int, str]:
        """The newest record's number and MAC, to keep somewhere else (`audit verify --head`)."""
        return self._rows()[1] or (0, GENESIS)

    def verify(self, exported: tuple[int, str] | None = None) -> list[AuditProblem]:
        """Problems in the chain (and against a head exported earlier); empty when every record
        is intact and in place."""
        records, head = self._rows()
        problems = verify_chain(records, head, self._key, exported)
        if head is None:
            problems.append(AuditProblem(len(records), "the audit head row was removed"))
        return problems

    def reseal(self) -> int:
        """Chain records written before the key existed (plain SHA-256) under the key, once their
        plain chain is verified intact. Returns how many were re-sealed (0: nothing to do, or a
        broken chain left as it is for `audit verify` to report)."""
        records, head = self._rows()
        readable = [r for r in records if r is not None]
        if not readable or len(readable) != len(records):
            return 0
        if verify_chain(records, head, None) or not verify_chain(records, head, self._key):
            return 0  # broken, or already under this key
        sealed = rechained(readable, self._key)
        try:
            with self.store.engine.begin() as conn:
                if self.store.sqlite:
                    conn.exec_driver_sql("UPDATE audit_head SET seq = seq WHERE 0")
                for record in sealed:
                    conn.execute(
                        audit.update()
                        .where(audit.c.seq == record["seq"])
                        .values(prev=record["prev"], hash=record["hash"])
                    )
                conn.execute(
                    audit_head.update()
                    .where(audit_head.c.id == 1)
                    .values(seq=sealed[-1]["seq"], hash=sealed[-1]["hash"])
                )
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"audit re-seal failed: {type(exc).__name__}") from exc
        return len(sealed)

    def import_file(self, path: Path) -> int:
        """Take over the records of an audit file written by an earlier shipline (JSON lines, the
        same chain) when the trail here is still empty; the file is renamed `*.imported`.
        Returns how many records were taken over."""
        if not path.exists() or self.records():
            return 0
        lines = [line for line in path.read_text("utf-8").splitlines() if line.strip()]
        try:
            records = rechained([json.loads(line) for line in lines], self._key)
            rows = [self._row(r) for r in records]
        except (ValueError, KeyError, TypeError):
            return 0  # not ours to repair: left where it is for `audit verify` of the file
        try:
            with self.store.engine.begin() as conn:
                if self.store.sqlite:
                    conn.exec_driver_sql("UPDATE audit_head SET seq = seq WHERE 0")
                if conn.execute(sa.select(sa.func.count()).select_from(audit)).scalar():
                    return 0
                if rows:
                    conn.execute(audit.insert(), rows)
                    conn.execute(
                        audit_head.update()
                        .where(audit_head.c.id == 1)
                        .values(seq=records[-1]["seq"], hash=records[-1]["hash"])
                    )
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"audit import failed: {type(exc).__name__}") from exc
        os.replace(path, path.with_name(path.name + ".imported"))
        return len(rows)
