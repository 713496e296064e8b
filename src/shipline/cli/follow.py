"""The live stage view: follow a run until it ends (or detach)."""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table
from rich.text import Text

STYLES = {
    "pending": "dim",
    "running": "cyan",
    "waiting": "yellow",
    "succeeded": "green",
    "failed": "red",
    "errored": "bold magenta",  # technical: shown apart from a rule's "no"
    "cancelled": "dim",
    "skipped": "dim",
}
ICONS = {
    "pending": "·",
    "running": "▶",
    "waiting": "⏸",
    "succeeded": "✔",
    "failed": "✘",
    "errored": "⚠",
    "cancelled": "⊘",
    "skipped": "↷",
}
EXIT = {"succeeded": 0, "failed": 1, "errored": 1, "cancelled": 1}


def render_stages(stages: list[dict[str, Any]]) -> Table:
    """A table of stages and their steps, coloured by phase."""
    table = Table(show_header=True, header_style="bold", expand=False)
    table.add_column("stage")
    table.add_column("phase")
    table.add_column("detail")
    for stage in stages:
        phase = stage["phase"]
        table.add_row(
            stage["name"],
            Text(f"{ICONS.get(phase, '?')} {phase}", style=STYLES.get(phase, "")),
            stage.get("reason") or "",
        )
        for step in stage.get("steps", []):
            sp = step["phase"]
            detail = step.get("error") or (
                f"attempt {step['attempts']}" if step.get("attempts", 0) > 1 else ""
            )
            canary = step.get("canary")
            if canary and not step.get("error"):
                detail = canary_line(canary)
            table.add_row(
                f"  {step['name']}",
                Text(f"{ICONS.get(sp, '?')} {sp}", style=STYLES.get(sp, "")),
                detail,
            )
    return table


def canary_line(canary: dict[str, Any]) -> str:
    """A running canary in one line: version and weight, step, last analysis."""
    last = canary.get("lastAnalysis")
    return (
        f"canary {canary.get('version')} at {canary.get('weight')}% (stable"
        f" {canary.get('stable')}) · step {canary.get('step')}/{canary.get('of')}"
        + (f" · last analysis {last}" if last else "")
    )


def _hint(run_id: int, data: dict[str, Any], waited: float) -> Text:
    waiting = [s for s in data["stages"] if s["phase"] == "waiting"]
    if waiting:
        command = f"shipline approve {run_id} --stage {waiting[0]['name']} --as USER"
        return Text(
            f"  waiting: {waiting[0].get('reason') or ''}\n  approve: {command}", style="yellow"
        )
    if data["phase"] == "pending" and waited > 2:
        return Text(
            "  queued: no worker has taken it yet (start one: shipline worker)", style="yellow"
        )
    return Text("")


def follow(service: Any, run_id: int, console: Any, details: Any, *, poll: float = 0.25) -> int:
    """Show the run live until it ends; return the CLI exit code for its final phase."""
    from rich.console import Group
    from rich.live import Live

    began = time.monotonic()
    with Live(console=console, refresh_per_second=8, transient=False) as live:
        while True:
            data = details(service, run_id)
            title = f"run {run_id} {data['pipeline']} {data['environment'] or ''}: {data['phase']}"
            header = Text(title, style=STYLES.get(data["phase"], ""))
            hint = _hint(run_id, data, time.monotonic() - began)
            live.update(Group(header, render_stages(data["stages"]), hint))
            if data["phase"] in EXIT:
                return EXIT[data["phase"]]
            time.sleep(poll)
