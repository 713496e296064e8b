"""Test gates: a command after an environment's deploy and verification (integration, qa,
security, performance, load, smoke), with the environment's addresses and versions in its
environment; its exit code decides and its JUnit XML, when it writes one, is read and kept.

The command runs in the project's folder with:
  SHIPLINE_ENVIRONMENT  the environment's name
  SHIPLINE_VERSIONS     {"service": "version", ...} (JSON)
  SHIPLINE_ADDRESSES    {"service": "http://...", ...} (JSON): where each service answers
  SHIPLINE_HEALTH_PATHS {"service": "/health", ...} (JSON): each service's health path
  SHIPLINE_ARTIFACTS    a folder of its own under .shipline/artifacts/ (reports go here;
                        `junit:` names a file in it)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from shipline.domain.models import TestGate
from shipline.engine.actions import BUILTIN, NOTE, StepContext
from shipline.engine.deploy_actions import target_of
from shipline.engine.runtime import current
from shipline.errors import CheckFailed, NotFoundError, UserError
from shipline.process import classify_exit, stream


def _addresses(params: dict[str, Any]) -> dict[str, str]:
    target = target_of(params)
    found: dict[str, str] = {}
    for service in params["versions"]:
        try:
            state = target.observe(str(params["environment"]), service)
        except NotFoundError:
            continue
        if state.address:
            address = state.address
            found[service] = address if "://" in address else f"http://{address}"
    return found


def junit_summary(path: Path) -> dict[str, Any]:
    """Totals and failing cases of a JUnit XML report."""
    from junitparser import JUnitXml, TestSuite
    from junitparser.junitparser import JUnitXmlError

    try:
        report = JUnitXml.fromfile(str(path))
    except (JUnitXmlError, OSError, ValueError) as exc:
        raise CheckFailed(f"the JUnit report {path.name} cannot be read: {exc}") from None
    suites = [report] if isinstance(report, TestSuite) else list(report)
    failed: list[str] = []
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for case in suite:
            totals["tests"] += 1
            outcome = {type(r).__name__.lower() for r in case.result}
            if "failure" in outcome:
                totals["failures"] += 1
                failed.append(f"{suite.name}::{case.name}")
            elif "error" in outcome:
                totals["errors"] += 1
                failed.append(f"{suite.name}::{case.name}")
            elif "skipped" in outcome:
                totals["skipped"] += 1
    return {**totals, "failed": failed[:50]}


def run_gate(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Run one test gate; a non-zero exit or a failing JUnit case fails it."""
    gate = TestGate.model_validate(params["gate"])
    root = Path(str(params["root"]))
    artifacts = (
        Path(str(params["stateDir"])) / "artifacts" / f"run-{ctx.run_id}"
        / str(params["environment"]) / gate.name
    )  # fmt: skip
    if artifacts.exists():
        shutil.rmtree(artifacts)  # a retried gate reports afresh
    artifacts.mkdir(parents=True, mode=0o700)
    # On PATH, beside shipline's own interpreter (tools installed with it: k6), or in the project.
    path = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent)])
    program = shutil.which(gate.command[0], path=path) or (
        str(root / gate.command[0]) if (root / gate.command[0]).exists() else None
    )
    if program is None and gate.skip_if_missing:
        ctx.log(f"{gate.type} gate {gate.name}: not run: '{gate.command[0]}' is not installed here")
        (artifacts / "summary.json").write_text(json.dumps({
            "gate": gate.name, "type": gate.type, "exitCode": None, "junit": None, "passed": True,
            "skipped": f"'{gate.command[0]}' is not installed here",
        }))  # fmt: skip
        return {f"{gate.name}.passed": True, f"{gate.name}.skipped": True,
                f"{gate.name}.artifacts": str(artifacts),
                NOTE: f"not run: '{gate.command[0]}' is not installed here"}  # fmt: skip
    if program is None:
        raise UserError(
            f"test gate {gate.name}: '{gate.command[0]}' is not installed here",
            hint="install it, or remove the gate from the environment's tests",
        )
    env = {
        **os.environ,
        "PATH": path,  # a gate's own commands find the tools installed with shipline too
        "SHIPLINE_ENVIRONMENT": str(params["environment"]),
        "SHIPLINE_VERSIONS": json.dumps(params["versions"], sort_keys=True),
        "SHIPLINE_ADDRESSES": json.dumps(_addresses(params), sort_keys=True),
        "SHIPLINE_ARTIFACTS": str(artifacts),
        "SHIPLINE_HEALTH_PATHS": json.dumps(params.get("healthPaths") or {}, sort_keys=True),
        "SHIPLINE_RUN_ID": str(ctx.run_id),
    }
    ctx.log(f"{gate.type} gate {gate.name}: {' '.join(gate.command)}")
    code, lines = stream([program, *gate.command[1:]], ctx.log, cwd=root, env=env)
    masker = current().masker  # the artifact is as clean as the run's log
    (artifacts / "output.log").write_text(masker.mask("\n".join(lines)) + "\n")
    outputs: dict[str, Any] = {f"{gate.name}.passed": False, f"{gate.name}.exitCode": code,
                               f"{gate.name}.artifacts": str(artifacts)}  # fmt: skip
    summary = None
    if gate.junit:
        report = artifacts / gate.junit
        if report.is_file():
            summary = junit_summary(report)
            outputs[f"{gate.name}.junit"] = summary
            ctx.log(
                f"{gate.name}: {summary['tests']} test(s), {summary['failures']} failed,"
                f" {summary['errors']} error(s), {summary['skipped']} skipped"
            )
        elif code == 0:
            raise CheckFailed(f"test gate {gate.name} wrote no JUnit report at {gate.junit}")
    (artifacts / "summary.json").write_text(json.dumps({  # what the run's report shows
        "gate": gate.name, "type": gate.type, "exitCode": code, "junit": summary,
        "passed": code == 0 and not (summary and (summary["failures"] or summary["errors"])),
    }))  # fmt: skip
    if summary and (summary["failures"] or summary["errors"]):  # its report says most
        raise CheckFailed(
            f"test gate {gate.name}: {summary['failures'] + summary['errors']} failing test(s):"
            f" {', '.join(summary['failed'][:5])}"
        )
    if code != 0:
        raise classify_exit(code, lines, f"test gate {gate.name} failed")
    outputs[f"{gate.name}.passed"] = True
    return outputs


BUILTIN.update({"tests.run": run_gate})
