"""`record` on SQLite and PostgreSQL (where it is one statement of data-modifying CTEs): the
event is appended, a stage or step is inserted the first time and updated after, run values
are set, and the cancel flag comes back."""

from __future__ import annotations

from datetime import UTC, datetime

from shipline.store.sql import SqlStateStore
from tests.integration.store.conftest import new_run


def test_record_inserts_then_updates_and_reads_the_cancel_flag(store: SqlStateStore) -> None:
    run = new_run(store)
    began = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    assert store.record(run, "stage.running", "deploy started", stage="deploy",
                        stage_values={"position": 1, "phase": "running", "started_at": began},
                        run_values={"phase": "running"}) is False  # fmt: skip
    assert store.record(run, "step.running", "kubectl apply", stage="deploy", step="apply",
                        step_values={"position": 0, "phase": "running", "attempts": 1,
                                     "outputs": {"n": [1, 2]}}) is False  # fmt: skip
    store.request_cancel(run, "not now")
    flag = store.record(run, "stage.succeeded", "deploy done", stage="deploy",
                        stage_values={"phase": "succeeded", "reason": None})  # fmt: skip
    store.record(run, "step.succeeded", "applied", stage="deploy", step="apply",
                 step_values={"outputs": {"n": [3]}})  # fmt: skip
    store.record(run, "note", "a message alone")
    (stage,) = store.stages(run)
    assert (stage["name"], stage["position"], stage["phase"]) == ("deploy", 1, "succeeded")
    assert stage["started_at"] is not None and stage["reason"] is None
    (step,) = store.steps(run)
    assert (step["phase"], step["attempts"], step["outputs"]) == ("running", 1, {"n": [3]})
    assert store.get_run(run).phase == "running"
    kinds = [e["kind"] for e in store.events(run)]
    assert kinds == ["stage.running", "step.running", "stage.succeeded", "step.succeeded", "note"]
    assert flag is True


def test_a_revision_is_remembered_once(store: SqlStateStore) -> None:
    run = new_run(store)
    entry = {"revision": 3, "version": "1.2.0", "replicas": 2, "cause": "deploy", "by": "ana",
             "run": run}  # fmt: skip
    store.add_revision("qa", "api", entry)
    store.add_revision("qa", "api", {**entry, "version": "9.9.9"})  # a replayed step: ignored
    store.add_revision("qa", "api", {**entry, "revision": 4, "version": "1.3.0"})
    store.add_revision("dev", "api", entry)  # same number, another environment
    rows = store.revisions("qa", "api")
    assert [(r["revision"], r["version"], r["by"], r["run_id"]) for r in rows] == [
        (3, "1.2.0", "ana", run), (4, "1.3.0", "ana", run)]  # fmt: skip
    assert [r["revision"] for r in store.revisions("dev", "api")] == [3]
    assert store.requested_by(run) == store.requested_by(run) is not None


def test_versions_before_a_run_are_the_newest_another_run_or_nobody_made(
    store: SqlStateStore,
) -> None:
    first, second = new_run(store), new_run(store)

    def made(environment: str, service: str, revision: int, version: str, run: int | None) -> None:
        store.add_revision(environment, service, {"revision": revision, "version": version,
                                                  "replicas": 1, "cause": "deploy", "run": run})  # fmt: skip

    made("qa", "api", 1, "1.0.0", first)
    made("qa", "api", 2, "1.1.0", None)  # a change nobody's run made (a restore, by hand)
    made("qa", "api", 3, "2.0.0", second)  # the run's own: not "before" it
    made("qa", "web", 1, "0.9.0", first)
    made("staging", "api", 7, "0.1.0", first)
    made("dev", "api", 9, "9.9.9", first)  # an environment not asked about
    found = store.versions_before(["qa", "staging"], ["api", "web", "db"], second)
    assert found == {("qa", "api"): "1.1.0", ("qa", "web"): "0.9.0", ("staging", "api"): "0.1.0"}
    assert store.versions_before(["qa"], ["api"], first) == {("qa", "api"): "2.0.0"}
    assert store.versions_before([], ["api"], first) == {}


def test_record_costs_one_statement_per_record_it_writes(store: SqlStateStore) -> None:
    """On SQLite: the event with the cancel flag read back, and each stage or step as one
    upsert when its values make a whole row (an update when they do not); on PostgreSQL the
    whole of it is one statement."""
    import sqlalchemy as sa

    run = new_run(store)
    said: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        said.append(statement.split(maxsplit=1)[0].upper())

    engines = {store.engine, store.reader}
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", count)
    try:
        store.record(run, "step.running", "go", stage="deploy", step="apply",
                     step_values={"position": 0, "phase": "running", "attempts": 1})  # fmt: skip
        first = list(said)
        said.clear()
        store.record(run, "step.succeeded", "done", stage="deploy", step="apply",
                     step_values={"position": 0, "phase": "succeeded", "outputs": {}})  # fmt: skip
        whole = list(said)
        said.clear()
        store.record(run, "note", "an output", stage="deploy", step="apply",
                     step_values={"outputs": {"n": 1}})  # fmt: skip
        part = list(said)
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", count)
    if store.sqlite:
        assert first == whole == ["INSERT", "INSERT"]  # the event, the step (upserted)
        assert part == ["INSERT", "UPDATE"]  # an existing row's column: an update
    else:
        assert first == whole == part == ["WITH"]
    (step,) = store.steps(run)
    assert (step["phase"], step["attempts"], step["outputs"]) == ("succeeded", 1, {"n": 1})


def test_phase_of_is_the_runs_phase_alone(store: SqlStateStore) -> None:
    run = new_run(store)
    assert store.phase_of(run) == "pending" == store.get_run(run).phase
    store.record(run, "run.failed", "broken", run_values={"phase": "failed"})
    assert store.phase_of(run) == "failed"
    assert store.phase_of(run + 1000) is None
