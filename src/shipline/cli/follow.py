"""The live stage view: follow a run until it ends (or detach)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.table import Table
from rich.text import Text

from shipline.cli.door import EXIT
from shipline.engine.reads import took, where

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


def render_stages(stages: list[dict[str, Any]]) -> Table:
    """A table of stages and their steps, coloured by phase."""
    table = Table(show_header=True, header_style="bold", expand=False)
    table.add_column("stage")
    table.add_column("phase")
    table.add_column("took", justify="right")
    table.add_column("detail")
    for stage in stages:
        phase = stage["phase"]
        table.add_row(
            stage["name"],
            Text(f"{ICONS.get(phase, '?')} {phase}", style=STYLES.get(phase, "")),
            took(stage.get("seconds")),
            stage.get("reason") or "",
        )
        for step in stage.get("steps", []):
            sp = step["phase"]
            detail = (
                step.get("error")
                or step.get("note")
                or (f"attempt {step['attempts']}" if step.get("attempts", 0) > 1 else "")
            )
            canary = step.get("canary")
            if canary and not step.get("error"):
                detail = canary_line(canary)
            table.add_row(
                f"  {step['name']}",
                Text(f"{ICONS.get(sp, '?')} {sp}", style=STYLES.get(sp, "")),
                took(step.get("seconds")),
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


def follow(
    service: Any,
    run_id: int,
    console: Any,
    details: Any,
    *,
    poll: float = 0.25,
    pause: Callable[[float], object] = time.sleep,
) -> int:
    """Show the run live until it ends; return the CLI exit code for its final phase."""
    from rich.console import Group
    from rich.live import Live

    began = time.monotonic()
    with Live(console=console, refresh_per_second=8, transient=False) as live:
        while True:
            data = details(service, run_id)
            title = f"run {run_id} {data['pipeline']} {where(data)}: {data['phase']}"
            header = Text(title, style=STYLES.get(data["phase"], ""))
            hint = _hint(run_id, data, time.monotonic() - began)
            live.update(Group(header, render_stages(data["stages"]), hint))
            if data["phase"] in EXIT:
                return EXIT[data["phase"]]
            pause(poll)


def stamp(at: Any = None) -> str:
    """HH:MM:SS of `at` (a datetime) or of now, in local time."""
    if at is None:
        return time.strftime("%H:%M:%S")
    return str(at.astimezone().strftime("%H:%M:%S"))


def changes(data: dict[str, Any], seen: dict[str, tuple[str, str]]) -> list[str]:
    """The lines that say what changed in a run since `seen` (updated): each stage and step
    whose phase or detail moved, a canary's weight and verdicts, who is awaited and how to
    approve. Pure, for plain (non-terminal) output."""
    out: list[str] = []
    run_id = data["id"]

    def said(key: str, phase: str, detail: str) -> bool:
        if seen.get(key) == (phase, detail):
            return True
        seen[key] = (phase, detail)
        return False

    for stage in data["stages"]:
        phase, reason = stage["phase"], stage.get("reason") or ""
        if phase == "pending" or said(f"stage {stage['name']}", phase, reason):
            pass
        elif phase == "waiting":
            out.append(f"stage {stage['name']}: waiting: {reason}")
            out.append(f"  approve: shipline approve {run_id} --stage {stage['name']} --as USER")
        else:
            out.append(f"stage {stage['name']}: {phase}" + (f" ({reason})" if reason else ""))
        for step in stage.get("steps", []):
            sphase = step["phase"]
            canary = step.get("canary")
            detail = step.get("error") or (canary_line(canary) if canary else "")
            if sphase == "pending" or said(f"step {stage['name']}/{step['name']}", sphase, detail):
                continue
            out.append(f"  {stage['name']}/{step['name']}: {sphase}" + (
                f": {detail}" if detail else ""))  # fmt: skip
    return out


def follow_plain(
    service: Any,
    run_id: int,
    write: Any,
    details: Any,
    *,
    poll: float = 0.25,
    verbose: bool = False,
    pause: Callable[[float], object] = time.sleep,
) -> int:
    """Follow a run as timestamped lines (stdout is not a terminal: a CI job's log): every
    change as it happens, never silence while waiting; the exit code of its final phase."""
    seen: dict[str, tuple[str, str]] = {}
    began = time.monotonic()
    last_log = 0
    said_queued = False
    while True:
        data = details(service, run_id)
        for line in changes(data, seen):
            write(f"{stamp()} {line}")
        if verbose:
            for entry in service.store.logs(run_id, after=last_log):
                last_log = entry["id"]
                write(f"{stamp(entry['at'])} {entry['stage']}/{entry['step']} | {entry['line']}")
        if data["phase"] == "pending" and not said_queued and time.monotonic() - began > 2:
            said_queued = True
            write(f"{stamp()} queued: no worker has taken it yet (start one: shipline worker)")
        if data["phase"] in EXIT:
            reason = f" ({data['reason']})" if data.get("reason") else ""
            write(f"{stamp()} run {run_id} {data['pipeline']} {data['environment'] or ''}:"
                  f" {data['phase']}{reason}")  # fmt: skip
            return EXIT[data["phase"]]
        pause(poll)


def entry_filter(stage: str | None, step: str | None) -> Any:
    """Whether an event or log line belongs to stage `stage` (a name, or an environment's
    prefix: `qa` for `qa:deploy`) and step `step` (a service), when given."""

    def keep(entry: dict[str, Any]) -> bool:
        where = entry.get("stage") or ""
        if stage and where != stage and not where.startswith(f"{stage}:"):
            return False
        return not (step and (entry.get("step") or "") != step)

    return keep


def stream_logs(
    service: Any,
    run_id: int,
    write: Any,
    *,
    stage: str | None = None,
    step: str | None = None,
    poll: float = 0.25,
    pause: Callable[[float], object] = time.sleep,
) -> int:
    """`runs logs --follow`: events and log lines in order, with timestamps, until the run ends
    (only those of stage `stage` — a name or an environment's prefix, `qa` for `qa:deploy` —
    and of step `step`, a service, when given)."""

    wanted = entry_filter(stage, step)

    last_event = last_log = 0
    while True:
        record = service.get(run_id)
        found: list[tuple[Any, int, str]] = []
        for event in service.store.events(run_id, after=last_event):
            last_event = event["id"]
            if wanted(event):
                where = "/".join(p for p in (event["stage"], event["step"]) if p)
                found.append(
                    (event["at"], 0, f"{event['kind']:<18} {where:<24} {event['message']}")
                )
        for entry in service.store.logs(run_id, after=last_log):
            last_log = entry["id"]
            if wanted(entry):
                found.append(
                    (entry["at"], 1, f"{entry['stage']}/{entry['step']} | {entry['line']}")
                )
        for at, _, text in sorted(found, key=lambda f: (f[0], f[1])):
            write(f"{stamp(at)} {text}")
        if record.phase in EXIT:
            return EXIT[record.phase]
        pause(poll)
