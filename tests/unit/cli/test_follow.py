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
