"""The live view says where a running canary is."""

from __future__ import annotations

from rich.console import Console

from shipline.cli.follow import canary_line, render_stages


def test_a_running_canary_shows_its_weight_step_and_last_analysis() -> None:
    canary = {"version": "1.1.0", "stable": "1.0.0", "weight": 20, "step": 2, "of": 4,
              "lastAnalysis": "succeeded"}  # fmt: skip
    assert canary_line(canary) == (
        "canary 1.1.0 at 20% (stable 1.0.0) · step 2/4 · last analysis succeeded"
    )
    console = Console(width=200, record=True)
    console.print(
        render_stages(
            [{"name": "deploy", "phase": "running", "reason": "",
              "steps": [{"name": "api", "phase": "running", "attempts": 1, "error": None,
                         "canary": canary}]}]
        )
    )  # fmt: skip
    assert "canary 1.1.0 at 20%" in console.export_text()


def _run(stages: list[dict[str, object]], phase: str = "running") -> dict[str, object]:
    return {"id": 7, "phase": phase, "stages": stages}


def test_plain_lines_say_each_change_once_and_who_is_awaited() -> None:
    from shipline.cli.follow import changes

    seen: dict[str, tuple[str, str]] = {}
    waiting = _run([
        {"name": "validate", "phase": "succeeded", "reason": "", "steps": []},
        {"name": "deploy", "phase": "waiting", "reason": "waiting for approval by cab",
         "steps": [{"name": "api", "phase": "pending"}]},
    ])  # fmt: skip
    assert changes(waiting, seen) == [
        "stage validate: succeeded",
        "stage deploy: waiting: waiting for approval by cab",
        "  approve: shipline approve 7 --stage deploy --as USER",
    ]
    assert changes(waiting, seen) == []  # nothing new: nothing said
    canary = {"version": "2", "stable": "1", "weight": 50, "step": 2, "of": 3}
    rolling = _run([
        {"name": "validate", "phase": "succeeded", "reason": "", "steps": []},
        {"name": "deploy", "phase": "running", "reason": "",
         "steps": [{"name": "api", "phase": "running", "canary": canary}]},
    ])  # fmt: skip
    assert changes(rolling, seen) == [
        "stage deploy: running",
        "  deploy/api: running: canary 2 at 50% (stable 1) · step 2/3",
    ]


def test_global_options_go_before_or_after_the_command() -> None:
    from shipline.cli.app import hoist_globals

    assert hoist_globals(["status", "-c", "x.yaml", "--quiet"]) == [
        "-c", "x.yaml", "--quiet", "status"]  # fmt: skip
    assert hoist_globals(["--json", "runs", "list"]) == ["runs", "list", "--json"]
    assert hoist_globals(["deploy", "--config=x.yaml", "--env", "dev"]) == [
        "--config=x.yaml", "deploy", "--env", "dev"]  # fmt: skip
    assert hoist_globals(["--verbose", "deploy"]) == ["--verbose", "deploy"]
    assert hoist_globals(["secrets", "set", "--", "-q"]) == ["secrets", "set", "--", "-q"]


def test_a_finished_stage_and_step_show_how_long_they_took() -> None:
    from shipline.engine.reads import took

    assert [took(x) for x in (None, 0.0854, 2.94, 245, 4805)] == [
        "", "85 ms", "2.9 s", "4m05s", "1h20m"
    ]  # fmt: skip
    console = Console(width=200, record=True)
    console.print(
        render_stages(
            [{"name": "deploy", "phase": "succeeded", "reason": "", "seconds": 2.94,
              "steps": [{"name": "api", "phase": "succeeded", "attempts": 1, "error": None,
                         "seconds": 0.0854},
                        {"name": "web", "phase": "running", "attempts": 1, "error": None,
                         "seconds": None}]}]
        )
    )  # fmt: skip
    lines = console.export_text().splitlines()
    assert "2.9 s" in next(line for line in lines if "deploy" in line)
    assert "85 ms" in next(line for line in lines if "api" in line)
    assert " s " not in next(line for line in lines if "web" in line).replace("succeeded", "")
