"""One service's runs never interleave: the (environment, service) lock a deploy takes covers
its verification and rollback, so many runs of one service submitted together on the memory
target each verify their own deploy, and the last one to take the lock is what runs at the end."""

from __future__ import annotations

from pathlib import Path

from shipline.config.loader import load_config
from shipline.domain.pipeline import PipelineSpec
from shipline.engine.pipelines import deploy_pipeline
from tests.engine_harness import Engine

PROJECT = Path(__file__).parents[2] / "e2e" / "projects" / "memory" / "shipline.yaml"
RUNS = 12  # 100 in bench/scale-style checks; CI size here


def test_runs_of_one_service_submitted_together_each_verify_their_own_deploy(
    engine: Engine, tmp_path: Path
) -> None:
    config = load_config(PROJECT)
    dev = config.environment("dev")
    state = tmp_path / "state"
    records = []
    for n in range(RUNS):
        spec = deploy_pipeline(config, dev, ["api"], f"1.0.{n}", str(state), root=str(tmp_path))
        records.append(engine.service.start(spec, actor="ann", environment="dev",
                                            services={"api": f"1.0.{n}"}))  # fmt: skip
    finished = [engine.wait(r.id, timeout=120) for r in records]
    failed = {r.id: r.reason for r in finished if r.phase != "succeeded"}
    assert failed == {}
    for record in records:
        phases = {s["name"]: s["phase"] for s in engine.store.stages(record.id)}
        assert (phases["verify"], phases["rollback"]) == ("succeeded", "skipped")
    # Sequential: one after another, in the order they took the lock; the last one stays.
    acquired = sorted(
        (event["at"], record.id)
        for record in records
        for event in engine.store.events(record.id)
        if event["kind"] == "lock.acquired"
    )
    assert sorted(run for _, run in acquired) == [r.id for r in records]
    last = next(r for r in records if r.id == acquired[-1][1])
    deployed = [r["version"] for r in engine.store.revisions("dev", "api")]
    assert len(deployed) == RUNS and deployed[-1] == last.services["api"]
    assert engine.store.lock_holders() == []


def test_latest_only_keeps_the_newest_submitted_whatever_order_a_worker_starts_them(
    engine: Engine,
) -> None:
    """The newer run starts first and waits for its approval; the older one, started after it,
    is the one superseded (it used to cancel the newer one, or wait forever)."""
    stage = {"name": "deploy", "approval": {"groups": ["cab"]}, "locks": ["live/api"],
             "lockPolicy": "latest-only", "steps": [{"name": "apply"}]}  # fmt: skip
    spec = PipelineSpec.model_validate({"kind": "deploy", "stages": [stage]})
    made = [
        engine.store.create_run(
            pipeline="deploy",
            environment="live",
            services={"api": v},
            params={"approvers": {"cab": ["casey"]}, "requestedBy": "ann"},
            spec=spec.model_dump(mode="json"),
            requested_by="ann",
        )
        for v in ("1.0.0", "1.0.1")
    ]
    older, newer = made
    engine.service.client.enqueue(newer.workflow_id, newer.id)
    engine.wait_stage(newer.id, "deploy", "waiting")
    engine.service.client.enqueue(older.workflow_id, older.id)
    ended = engine.wait(older.id)
    assert (ended.phase, ended.cancel_reason) == (
        "cancelled", f"superseded by run {newer.id} (latest-only)")  # fmt: skip
    engine.service.vote(newer.id, "casey", approve=True)
    assert engine.wait(newer.id).phase == "succeeded"
