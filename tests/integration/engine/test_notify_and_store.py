"""Run events reach notifiers; the Alembic migration builds exactly the declared schema."""

from __future__ import annotations

import json
import time
from pathlib import Path

import sqlalchemy as sa

from shipline.domain.events import EventKind
from shipline.notify.webhook import WebhookNotifier
from shipline.store.schema import metadata
from shipline.store.sql import SqlStateStore
from tests.engine_harness import Engine
from tests.servers.receiver import receiver


def test_every_phase_is_announced_as_it_is(engine: Engine) -> None:
    with receiver() as (url, record):
        engine.runtime.notifiers = lambda kind: [WebhookNotifier("hook", url, "k3y-k3y-k3y")]
        try:
            ok = engine.start(
                [{"name": "deploy", "approval": {"groups": ["cab"]}, "steps": [{"name": "a"}]}],
                approvers={"cab": ["casey"]},
                services={"api": "1.0.0"},
            )
            engine.wait_stage(ok.id, "deploy", "waiting")
            engine.service.vote(ok.id, "casey", approve=True)
            engine.wait(ok.id)
            bad = engine.start([{"name": "s", "steps": [{"name": "x", "action": "fail"}]}])
            engine.wait(bad.id)
            broke = engine.start(
                [{"name": "s", "steps": [{"name": "x", "action": "fail",
                                          "params": {"technical": True}}]}]
            )  # fmt: skip
            engine.wait(broke.id)
            stopped = engine.start(
                [{"name": "deploy", "approval": {"groups": ["cab"]}, "steps": [{"name": "a"}]}],
                approvers={"cab": ["casey"]},
            )
            engine.wait_stage(stopped.id, "deploy", "waiting")
            engine.service.cancel(stopped.id, "casey", "not today")
            engine.wait(stopped.id)
            end = time.monotonic() + 30  # the last announcement follows the run's final phase
            while len(record.requests) < 10 and time.monotonic() < end:
                time.sleep(0.05)
        finally:
            engine.runtime.notifiers = lambda kind: ()
    seen = [(p["run"], p["event"]) for p in (json.loads(body) for _, body in record.requests)]
    # Each run's announcements in order (two runs' may interleave: delivery follows the phase).
    assert [e for r, e in seen if r == str(ok.id)] == ["started", "waiting", "succeeded"]
    assert [e for r, e in seen if r == str(bad.id)] == ["started", "failed"]
    assert [e for r, e in seen if r == str(broke.id)] == ["started", "errored"]
    assert [e for r, e in seen if r == str(stopped.id)] == ["started", "waiting", "cancelled"]
    assert len(seen) == 10
    waiting = json.loads(record.requests[[e for _, e in seen].index("waiting")][1])
    assert waiting["approveCommand"] == f"shipline approve {ok.id} --stage deploy --as USER"
    assert waiting["services"] == {"api": "1.0.0"}
    assert {kind.value for kind in EventKind} == {
        "started", "waiting", "succeeded", "failed", "errored", "cancelled",
    }  # fmt: skip


def test_migration_matches_the_declared_schema(tmp_path: Path) -> None:
    store = SqlStateStore.connect(f"sqlite:///{tmp_path / 'state.db'}")
    inspector = sa.inspect(store.engine)
    for table in metadata.sorted_tables:
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name
    SqlStateStore.connect(
        f"sqlite:///{tmp_path / 'state.db'}"
    ).close()  # migrating twice is a no-op
    store.close()
