"""What a worker answers at its front door: the run, a refusal with the command's own lines
and exit code, or `fallback` (the command submits by itself) — never `fallback` once the
submission was attempted, so that nothing is ever submitted twice."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from shipline.engine import submit
from shipline.engine.submit import FrontDesk
from shipline.engine.workspace import Workspace

PROJECT = Path(__file__).parents[2] / "e2e" / "projects" / "memory" / "shipline.yaml"


@pytest.fixture
def desk(tmp_path: Path) -> FrontDesk:
    config = tmp_path / "shipline.yaml"
    shutil.copy(PROJECT, config)
    return FrontDesk(Workspace.open(config, {"SHIPLINE_HOME": str(tmp_path / "state")}))


def _request(desk: FrontDesk, **args: Any) -> dict[str, Any]:
    return {"op": "deploy", "config": str(desk.ws.config_path), "actor": "bob",
            "database": desk.ws.database_url,
            "args": {"env": "dev", "services": "api", "tag": "1.0.0", **args}}  # fmt: skip


def test_a_deploy_is_recorded_as_the_command_would(desk: FrontDesk) -> None:
    answer = desk.answer(_request(desk))
    assert answer == {"run": 1, "phase": "pending"}
    refused = desk.answer(_request(desk, services="nope"))
    assert refused["code"] == 2 and refused["error"][0] == "unknown service(s): nope"


def test_what_the_worker_does_not_answer_goes_back_to_the_command(desk: FrontDesk) -> None:
    assert "fallback" in desk.answer({**_request(desk), "op": "approve"})
    assert "fallback" in desk.answer({**_request(desk), "actor": ""})
    assert "fallback" in desk.answer({**_request(desk), "config": "/elsewhere/shipline.yaml"})
    assert "fallback" in desk.answer({**_request(desk), "database": "sqlite:////other.db"})


def test_a_configuration_broken_since_the_worker_started_is_the_commands_error(
    desk: FrontDesk,
) -> None:
    desk.ws.config_path.write_text(desk.ws.config_path.read_text() + "  - {name: oops\n")
    answer = desk.answer(_request(desk))
    assert answer["code"] == 2 and "shipline.yaml:" in answer["error"][0]


def test_a_failure_after_submitting_began_is_never_a_fallback(
    desk: FrontDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(submit, "submit_deploy", broken)
    answer = desk.answer(_request(desk))
    assert "fallback" not in answer and answer["code"] == 1


def test_votes_and_cancellations_are_decided_by_the_run_service(desk: FrontDesk) -> None:
    """A vote on a run that waits for nothing is refused with the command's line and exit
    code; a cancellation is recorded and audited as the command's own would be (votes counted
    at the door, with a worker running the run: tests/e2e/test_front_door.py)."""
    run = desk.answer({**_request(desk, env="qa"), "actor": "bob"})["run"]
    base = {"config": str(desk.ws.config_path), "database": desk.ws.database_url}
    early = desk.answer({**base, "op": "vote", "actor": "ann",
                         "args": {"run": run, "approve": True}})  # fmt: skip
    assert early == {"error": [f"nothing in run {run} is waiting for approval"], "code": 2}
    assert desk.answer({**base, "op": "cancel", "actor": "bob",
                        "args": {"run": run, "reason": "wrong tag"}}) == {"run": run}  # fmt: skip
    malformed = desk.answer({**base, "op": "vote", "actor": "ann", "args": {"run": run}})
    assert "fallback" in malformed  # no `approve`: not a request the worker reads
    from shipline.engine.assembly import run_service

    service = run_service(desk.ws)
    assert service.store.get_run(run).cancel_requested  # type: ignore[union-attr]
    actions = [(e["actor"], e["action"]) for e in service.audit.records()]
    assert ("bob", "run.cancel") in actions


def test_a_brief_look_at_a_run_brings_its_document_once_it_ended(desk: FrontDesk) -> None:
    """A command waiting for a run's end asks for its phase at each ring, and gets the run's
    document with the answer that says it ended (no second request)."""
    desk.open()  # what the worker does when its door opens
    run = desk.answer(_request(desk))["run"]
    base = {"config": str(desk.ws.config_path), "database": desk.ws.database_url, "actor": "bob"}
    look = {**base, "op": "show", "args": {"run": run, "brief": True, "detailsOnceEnded": True}}
    assert desk.answer(look) == {"phase": "pending"}
    from datetime import UTC, datetime

    from shipline.engine.assembly import run_service

    run_service(desk.ws).store.record(
        run, "run.succeeded", "all stages succeeded",
        run_values={"phase": "succeeded", "reason": "all stages succeeded",
                    "finished_at": datetime.now(UTC)},
    )  # fmt: skip
    ended = desk.answer(look)
    assert ended["phase"] == "succeeded"
    assert ended["details"]["id"] == run and ended["details"]["phase"] == "succeeded"
    plain = desk.answer({**look, "args": {"run": run, "brief": True}})
    assert plain == {"phase": "succeeded"}  # asked for the phase alone: the phase alone
