"""What may be promoted from an environment (`held_in`): a version that a deploy run or a
promotion put there and that held, read from the run history once for every service."""

from __future__ import annotations

from dataclasses import replace

from shipline.engine.promotion import held_in
from shipline.store.sql import SqlStateStore


def _run(store: SqlStateStore, pipeline: str, environment: str, services: dict[str, str],
         phase: str, stages: dict[str, str] | None = None, envs: list[str] | None = None) -> int:  # fmt: skip
    run = store.create_run(pipeline=pipeline, environment=environment, services=services,
                           params={"environments": envs or []}, spec={},
                           requested_by="ann").id  # fmt: skip
    store.record(run, f"run.{phase}", phase, run_values={"phase": phase})
    for position, (name, stage_phase) in enumerate((stages or {}).items()):
        store.save_stage(run, name, position=position, phase=stage_phase)
    return run


def test_a_version_held_where_a_run_put_it_and_nowhere_else(store: SqlStateStore) -> None:
    _run(store, "deploy", "dev", {"api": "1.0", "web": "1.0"}, "succeeded")
    _run(store, "deploy", "dev", {"api": "2.0", "web": "2.0"}, "failed")
    _run(store, "deploy", "qa", {"db": "3.0"}, "succeeded")  # another environment
    # a promotion whose qa held, and one whose qa was rolled back
    _run(store, "promote", "staging", {"api": "1.5"}, "succeeded",
         {"qa:deploy": "succeeded", "qa:verify": "succeeded", "qa:rollback": "skipped"},
         envs=["qa", "staging"])  # fmt: skip
    _run(store, "promote", "qa", {"web": "1.5"}, "failed",
         {"qa:deploy": "succeeded", "qa:verify": "failed", "qa:rollback": "succeeded"},
         envs=["qa"])  # fmt: skip
    wanted = {"api": "1.0", "web": "2.0", "db": "3.0"}
    assert held_in(store, "dev", wanted) == {"api"}
    assert held_in(store, "qa", {"api": "1.5", "web": "1.5", "db": "3.0"}) == {"api", "db"}
    assert held_in(store, "staging", {"api": "1.5"}) == set()  # its staging stages never ran


def test_a_list_of_runs_leaves_their_specifications_unread(store: SqlStateStore) -> None:
    run = store.create_run(pipeline="deploy", environment="dev", services={"api": "1.0"},
                           params={"environments": []}, spec={"stages": [{"name": "deploy"}]},
                           requested_by="ann").id  # fmt: skip
    (listed,) = store.list_runs(limit=10)
    assert listed.spec == {} and listed.services == {"api": "1.0"} and listed.id == run
    whole = store.get_run(run)
    assert whole is not None and whole.spec == {"stages": [{"name": "deploy"}]}
    assert listed == replace(whole, spec={}) == store.get_run(run, spec=False)
    assert store.get_run(run + 1000, spec=False) is None
