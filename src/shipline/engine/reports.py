"""Run reports: for every deploy and promotion, a Markdown summary and one self-contained HTML
page under `.shipline/reports/` — stages with their durations, approvals (who, when, why),
test gates (JUnit totals, load percentiles), canary verdicts with their samples as a small
chart, and the versions per environment before and after."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from shipline.engine.reads import times
from shipline.engine.wiring import SqlStateStore

KINDS = {"deploy", "promote"}


def gather(
    store: SqlStateStore,
    run_id: int,
    state_dir: Path,
    *,
    phase: str | None = None,
    reason: str | None = None,
) -> dict[str, Any] | None:
    """What the report says of run `run_id` (None: no report for this kind of run); `phase` and
    `reason` when the run's end is being recorded."""
    run = store.get_run(run_id, spec=False)
    if run is None or run.pipeline not in KINDS:
        return None
    environments = list(run.params.get("environments") or [run.environment])
    older = store.versions_before(environments, list(run.services), run_id)
    before: dict[str, dict[str, str | None]] = {
        env: {service: older.get((env, service)) for service in run.services}
        for env in environments
    }
    stages, tests, canaries = [], [], []
    for row in store.stages(run_id):
        stages.append({"name": row["name"], "phase": row["phase"], "reason": row["reason"],
                       "seconds": times(row)["seconds"]})  # fmt: skip
        outputs = row.get("outputs") or {}
        for key, value in outputs.items():
            if key.endswith(".analyses") and value:
                canaries.append({"stage": row["name"], "service": key.removesuffix(".analyses"),
                                 "samples": value})  # fmt: skip
    for env in environments:  # every gate that ran, passed or not (its artifacts folder)
        for folder in sorted((state_dir / "artifacts" / f"run-{run_id}" / env).glob("*")):
            summary = folder / "summary.json"
            if not summary.is_file():
                continue
            gate = json.loads(summary.read_text())
            found = {"stage": f"{env}:tests" if run.pipeline == "promote" else "tests",
                     "gate": gate["gate"], "type": gate["type"], "passed": gate["passed"],
                     "skipped": gate.get("skipped"),
                     **(gate.get("junit") or {"tests": 0, "failures": 0, "errors": 0})}  # fmt: skip
            load = folder / "load.json"
            if load.is_file():
                found["percentiles"] = json.loads(load.read_text())
            tests.append(found)
    phases = {s["name"]: s["phase"] for s in stages}
    after: dict[str, dict[str, str | None]] = {}
    for env in environments:
        prefix = f"{env}:" if run.pipeline == "promote" else ""
        held = (
            phases.get(f"{prefix}deploy") == "succeeded"
            and phases.get(f"{prefix}rollback") != "succeeded"
        )
        after[env] = {
            s: (v if held else before.get(env, {}).get(s)) for s, v in run.services.items()
        }
    return {
        "run": run.id, "pipeline": run.pipeline, "phase": phase or run.phase,
        "reason": reason if reason is not None else run.reason,
        "requestedBy": run.requested_by, "requestedAt": run.requested_at.isoformat(),
        "release": run.params.get("release"), "environments": environments,
        "stages": stages, "tests": tests, "canaries": canaries,
        "approvals": [
            {"stage": v["stage"], "user": v["user"], "approve": v["approve"],
             "comment": v["comment"], "at": v["at"].isoformat()}
            for v in store.votes(run_id)
        ],
        "versions": {"before": before, "after": after},
    }  # fmt: skip


def markdown(data: dict[str, Any]) -> str:
    """The report as Markdown."""
    lines = [
        f"# Run {data['run']}: {data['pipeline']} {' -> '.join(data['environments'])}"
        f" — {data['phase']}",
        "",
        f"Requested by {data['requestedBy']} at {data['requestedAt']}"
        + (f"; release {data['release']}" if data["release"] else ""),
        "",
        f"> {data['reason']}" if data["reason"] else "",
        "",
        "## Stages",
        "",
        "| stage | phase | seconds | reason |",
        "|---|---|---|---|",
        *(
            f"| {s['name']} | {s['phase']} | {s['seconds'] if s['seconds'] is not None else ''}"
            f" | {(s['reason'] or '').replace('|', '/')} |"
            for s in data["stages"]
        ),
        "",
        "## Approvals",
        "",
        *(
            [
                f"- {v['stage']}: {'approved' if v['approve'] else 'rejected'} by {v['user']}"
                f" at {v['at']}" + (f" — {v['comment']}" if v["comment"] else "")
                for v in data["approvals"]
            ]
            or ["- none needed"]
        ),
        "",
        "## Test gates",
        "",
    ]
    for test in data["tests"]:
        if test.get("skipped"):
            lines.append(f"- {test['stage']} {test['gate']}: not run ({test['skipped']})")
            continue
        lines.append(
            f"- {test['stage']} {test['gate']} ({'passed' if test['passed'] else 'FAILED'}):"
            f" {test['tests']} test(s), {test['failures']}"
            f" failed, {test['errors']} error(s)"
            + (f"; failing: {', '.join(test['failed'][:5])}" if test.get("failed") else "")
        )
        for service, cut in (test.get("percentiles") or {}).items():
            lines.append(
                f"  - {service}: p50 {cut.get('p50')} ms, p90 {cut.get('p90')} ms,"
                f" p95 {cut.get('p95')} ms, p99 {cut.get('p99')} ms"
            )
    if not data["tests"]:
        lines.append("- none ran")
    lines += ["", "## Canary analysis", ""]
    for canary in data["canaries"]:
        samples = ", ".join(
            f"{s['verdict']} ({100 * s['canary']:.1f} % vs {100 * s['stable']:.1f} %)"
            for s in canary["samples"]
        )
        lines.append(f"- {canary['stage']} {canary['service']}: {samples}")
    if not data["canaries"]:
        lines.append("- no canary")
    lines += [
        "",
        "## Versions",
        "",
        "| environment | service | before | after |",
        "|---|---|---|---|",
    ]
    for env, services in data["versions"]["after"].items():
        for service, version in sorted(services.items()):
            was = data["versions"]["before"].get(env, {}).get(service)
            lines.append(f"| {env} | {service} | {was or '-'} | {version or '-'} |")
    return "\n".join(lines) + "\n"


def chart(samples: list[dict[str, Any]]) -> str:
    """Canary and stable error rates per analysis interval as a small inline SVG: a line and a
    dot per sample, scaled to the larger of 5 % and the worst rate, with its scale written."""
    width, height, pad = 280, 80, 10
    top = max([0.05] + [float(s.get(k) or 0) for s in samples for k in ("canary", "stable")])
    top = min(top, 1.0)
    step = (width - 2 * pad) / max(len(samples) - 1, 1)

    def xy(i: int, value: Any) -> tuple[float, float]:
        share = min(float(value or 0), top) / top
        return pad + i * step, height - pad - share * (height - 2 * pad)

    def series(key: str, colour: str) -> str:
        points = [xy(i, s.get(key)) for i, s in enumerate(samples)]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        dots = "".join(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in points
        )
        return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{line}"/>{dots}'

    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="error rate per interval, canary red, stable green, scale 0 to'
        f' {top:.0%}">'
        f'<rect width="{width}" height="{height}" fill="#f6f8fa"/>'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}"'
        ' stroke="#d1d9e0"/>'
        f'<text x="{pad}" y="{pad + 2}" font-size="9" fill="#59636e">{top:.0%}</text>'
        f"{series('stable', '#1f883d')}{series('canary', '#d1242f')}"
        "</svg>"
    )


def page(data: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (inline style, inline SVG)."""
    e = html.escape
    stages = "".join(
        f"<tr><td>{e(s['name'])}</td><td class='{e(s['phase'])}'>{e(s['phase'])}</td>"
        f"<td>{s['seconds'] if s['seconds'] is not None else ''}</td>"
        f"<td>{e(s['reason'] or '')}</td></tr>"
        for s in data["stages"]
    )
    votes = (
        "".join(
            f"<li>{e(v['stage'])}: {'approved' if v['approve'] else 'rejected'} by {e(v['user'])}"
            f" at {e(v['at'])}{' — ' + e(v['comment']) if v['comment'] else ''}</li>"
            for v in data["approvals"]
        )
        or "<li>none needed</li>"
    )
    tests = (
        "".join(
            f"<li>{e(t['stage'])} {e(t['gate'])} ({'passed' if t['passed'] else 'FAILED'}):"
            f" {t['tests']} test(s), {t['failures']} failed,"
            f" {t['errors']} error(s)"
            + "".join(
                f"<br>{e(svc)}: p50 {c.get('p50')} · p90 {c.get('p90')} · p95 {c.get('p95')}"
                f" · p99 {c.get('p99')} ms"
                for svc, c in (t.get("percentiles") or {}).items()
            )
            + "</li>"
            for t in data["tests"]
        )
        or "<li>none ran</li>"
    )
    canaries = (
        "".join(
            f"<li>{e(c['stage'])} {e(c['service'])}: "
            + ", ".join(e(s["verdict"]) for s in c["samples"])
            + f"<br>{chart(c['samples'])}</li>"
            for c in data["canaries"]
        )
        or "<li>no canary</li>"
    )
    versions = "".join(
        f"<tr><td>{e(env)}</td><td>{e(svc)}</td>"
        f"<td>{e(str(data['versions']['before'].get(env, {}).get(svc) or '-'))}</td>"
        f"<td>{e(str(v or '-'))}</td></tr>"
        for env, found in data["versions"]["after"].items()
        for svc, v in sorted(found.items())
    )
    title = f"Run {data['run']}: {data['pipeline']} {' → '.join(data['environments'])}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:60em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #d0d7de;padding:4px 8px;text-align:left}}
.succeeded{{color:#1f883d}}.failed,.errored{{color:#d1242f}}.skipped{{color:#6e7781}}</style>
</head><body>
<h1>{e(title)} — <span class="{e(data["phase"])}">{e(data["phase"])}</span></h1>
<p>Requested by {e(data["requestedBy"])} at {e(data["requestedAt"])}
{("; release " + e(data["release"])) if data["release"] else ""}</p>
<p>{e(data["reason"] or "")}</p>
<h2>Stages</h2><table><tr><th>stage</th><th>phase</th><th>seconds</th><th>reason</th></tr>
{stages}</table>
<h2>Approvals</h2><ul>{votes}</ul>
<h2>Test gates</h2><ul>{tests}</ul>
<h2>Canary analysis</h2><p>error rate per interval: canary (red), stable (green)</p>
<ul>{canaries}</ul>
<h2>Versions</h2><table><tr><th>environment</th><th>service</th><th>before</th><th>after</th>
</tr>{versions}</table>
</body></html>
"""


def write_reports(
    store: SqlStateStore,
    run_id: int,
    state_dir: Path,
    *,
    phase: str | None = None,
    reason: str | None = None,
) -> Path | None:
    """Write run `run_id`'s report (Markdown and HTML); the HTML page's path, or None."""
    data = gather(store, run_id, state_dir, phase=phase, reason=reason)
    if data is None:
        return None
    folder = state_dir / "reports"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    (folder / f"run-{run_id}.md").write_text(markdown(data))
    target = folder / f"run-{run_id}.html"
    target.write_text(page(data))
    return target
