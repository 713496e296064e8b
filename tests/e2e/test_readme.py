"""The README's "first five minutes", run as written with stdout not a terminal (as in a CI
job): the demo (QuikApp's ladder, local to live), then the tour's ladder (deploy, a new version, a bad canary rolled back, an
approval). Every waiting phase printed its line within 2 s of the run starting to wait."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.e2e.worker import EXE

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- first-five-minutes -->\s*```bash\n(.*?)```", re.DOTALL)


def _commands() -> list[str]:
    found = BLOCK.search((ROOT / "README.md").read_text())
    assert found, "the README has no first-five-minutes block"
    return [line for line in found[1].splitlines() if line.strip()]


def _bash(line: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def _exported(line: str, env: dict[str, str]) -> dict[str, str]:
    script = f"{line}\npython3 -c 'import json, os; print(json.dumps(dict(os.environ)))'"
    done = _bash(script, env)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_the_first_five_minutes_as_written(tmp_path: Path) -> None:
    lines = _commands()
    assert lines[0] == "./scripts/demo"
    base = {k: v for k, v in os.environ.items() if k not in ("SHIPLINE_CONFIG", "SHIPLINE_HOME")}
    base.update(SHIPLINE_USER="me")
    demo = {**base, "SHIPLINE_HOME": str(tmp_path / "demo"),
            "SHIPLINE_CONFIG": str(ROOT / "examples" / "quikapp" / "shipline.yaml")}  # fmt: skip
    env = {**base, "SHIPLINE_HOME": str(tmp_path / "tour")}
    worker: subprocess.Popen[str] | None = None
    try:
        done = _bash("./scripts/demo", {k: v for k, v in demo.items() if k != "SHIPLINE_CONFIG"})
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        # the whole ladder: 1.0.0 up every rung, then the hotfix, each run to its end
        assert done.stdout.count("succeeded (all stages succeeded)") == 4, done.stdout[-3000:]
        assert "qa:deploy: approved by quinn (QA Lead)" in done.stdout
        assert "versions up the ladder" in done.stdout and "backend-gateway" in done.stdout
        for gate in ("smoke", "load", "security"):  # QuikApp's reference gates ran and held
            assert f"tests/{gate}: succeeded" in done.stdout, gate
        for index, line in enumerate(lines[1:], start=1):
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if line.startswith("export "):
                env = _exported(line, env)
            elif line.endswith("&"):
                worker = subprocess.Popen(["bash", "-c", line.removesuffix("&")], cwd=ROOT,
                                          env=env, text=True)  # fmt: skip
            elif following.startswith("shipline approve"):
                _waits_then_approved(line, following, env)
            elif line.startswith("shipline approve"):
                continue  # run by _waits_then_approved
            else:
                done = _bash(line, env, timeout=300)
                expected = 1 if "shiplineDemoErrorRate" in line else 0
                assert done.returncode == expected, f"{line}\n{done.stdout[-2000:]}{done.stderr}"
                if line.startswith("shipline deploy"):
                    assert done.stdout.rstrip().splitlines()[-1].split(" ", 1)[1].startswith(
                        "run ")  # the result, timestamped  # fmt: skip
                if expected:
                    assert "rolled back" in done.stdout and "error rate" in done.stdout
        status = json.loads(_bash("shipline status --json", env).stdout)
        assert len(status) == 6  # the tour's last lines took everything down
        assert all(r["version"] is None and r["health"].startswith("stopped") for r in status)
    finally:
        _bash(f"{EXE} demo --stop", demo)  # whatever PATH the test runs with
        if worker is not None and worker.poll() is None:
            _bash("shipline worker --stop", env)
            worker.wait(timeout=60)


def _waits_then_approved(line: str, approve: str, env: dict[str, str]) -> None:
    """A deploy that waits for its approval: its waiting line comes within 2 s of the run
    starting to wait; the README's approve command lets it finish."""
    process = subprocess.Popen(["bash", "-c", line], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stdout is not None
    said_at = None
    for text in process.stdout:
        if "waiting: waiting for approval" in text and said_at is None:
            said_at = datetime.now(UTC)
        if "approve: shipline approve" in text:
            break
    assert said_at is not None, "the deploy never said it was waiting"
    run = re.search(r"shipline approve (\d+)", approve)
    assert run
    events = json.loads(_bash(f"shipline runs logs {run[1]} --json", env).stdout)["events"]
    began = datetime.fromisoformat(next(e["at"] for e in events if e["kind"] == "stage.waiting"))
    assert (said_at - began).total_seconds() < 2, (said_at, began)
    assert _bash(approve, env).returncode == 0
    end = time.monotonic() + 120
    rest, _ = process.communicate(timeout=max(1, end - time.monotonic()))
    assert process.returncode == 0, rest
    assert rest.rstrip().endswith("succeeded (all stages succeeded)")
