"""What operators see in a CI job (stdout not a terminal) and the flags they type: timestamped
progress lines that never leave a wait silent, --quiet, Ctrl-C while following, --version,
global options after the command, protected environments, short git refs, worker --stop."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.worker import EXE, running_worker, sh

PROJECT = Path(__file__).parent / "projects" / "memory" / "shipline.yaml"
STAMP = re.compile(r"^(\d\d:\d\d:\d\d) ")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    config = tmp_path / "shipline.yaml"
    text = PROJECT.read_text().replace("    checks: {lock: latest-only}",
                                       "    checks: {lock: latest-only}\n    protected: true")  # fmt: skip
    config.write_text(text)
    with running_worker(config, tmp_path / "state", "bob", tmp_path / "w.log") as environ:
        yield environ


def _interruptible() -> None:
    """Ctrl-C reaches the command even when the tests run as a background job (which starts
    with SIGINT ignored, and Python then never installs its handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _follow(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([EXE, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=_interruptible)  # fmt: skip  # noqa: PLW1509


def _lines_until(process: subprocess.Popen[str], pattern: str) -> list[tuple[float, str]]:
    assert process.stdout is not None
    seen: list[tuple[float, str]] = []
    for line in process.stdout:
        seen.append((time.monotonic(), line.rstrip("\n")))
        if pattern in line:
            return seen
    raise AssertionError(f"never printed {pattern!r}: {seen}")


def test_a_ci_job_sees_every_phase_as_a_timestamped_line(env: dict[str, str]) -> None:
    started = time.monotonic()
    process = _follow(env, "deploy", "--env", "qa", "--tag", "2.0.0")
    lines = _lines_until(process, "approve: shipline approve")
    assert lines[0][1] == "run 1 queued"
    waiting = next(at for at, text in lines if "stage deploy: waiting" in text)
    assert waiting - started < 10  # the wait is announced, not silent (a loaded machine)
    assert "waiting for approval by leads" in lines[-2][1]
    assert all(STAMP.match(text) for _, text in lines[1:])
    assert sh(env, "approve", "1", "--as", "ann").returncode == 0
    rest, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    tail = rest.splitlines()
    assert tail[-1].endswith("run 1 deploy qa: succeeded (all stages succeeded)")
    assert "  deploy/api: succeeded" in "\n".join(tail)
    assert all(STAMP.match(line) for line in tail)

    quiet = sh(env, "deploy", "--env", "dev", "--tag", "2.0.0", "--quiet")
    assert (quiet.returncode, quiet.stdout) == (
        0,
        "run 2 deploy: succeeded (all stages succeeded)\n",
    )
    detached = sh(env, "deploy", "--env", "qa", "--tag", "2.0.1", "--detach")
    assert detached.returncode == 3 and "shipline runs logs 3 --follow" in detached.stdout
    logs = sh(env, "runs", "logs", "2", "--stage", "deploy", "--service", "api")
    assert logs.returncode == 0 and logs.stdout
    assert all(STAMP.match(line) and "deploy/api" in line for line in logs.stdout.splitlines())

    # Ctrl-C while following: the run goes on, and the command says how to follow or cancel it.
    process = _follow(env, "runs", "logs", "3", "--follow")
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "run 3 goes on" in err and "shipline runs cancel 3" in err
    assert json.loads(sh(env, "runs", "show", "3", "--json").stdout)["phase"] == "waiting"


def test_conventional_flags(env: dict[str, str], tmp_path: Path) -> None:
    version = sh(env, "--version")
    assert version.returncode == 0 and version.stdout.startswith("shipline ")
    moved = sh({**env, "SHIPLINE_CONFIG": ""}, "envs", "list", "--json", "-c",
               env["SHIPLINE_CONFIG"])  # fmt: skip
    assert moved.returncode == 0 and next(e["name"] for e in json.loads(moved.stdout)) == "dev"
    first = sh(env, "--json", "services", "list")
    assert first.returncode == 0 and json.loads(first.stdout)
    protected = sh(env, "deploy", "--env", "live", "--tag", "1.0.0")
    assert protected.returncode == 2 and "live is protected: name the services" in protected.stderr
    named = sh(env, "deploy", "--env", "live", "--services", "api", "--tag", "1.0.0", "--detach")
    assert named.returncode == 3
    promoted = sh(env, "promote", "--from", "qa", "--to", "live", "--tag", "1.0.0")
    assert promoted.returncode == 2 and "live is protected: name the services" in promoted.stderr
    nobody = sh(env, "worker", "--stop", "--id", "nobody")
    assert nobody.returncode == 1 and "no worker nobody" in nobody.stderr
    custom = sh(env, "ci", "tag", "--ref", "main", "--custom-tag", "x")
    assert custom.returncode == 2 and "--custom-tag goes with --strategy custom" in custom.stderr


def test_a_short_ref_means_what_git_says(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q",
                 "--allow-empty", "-m", "x"], ["tag", "v1.4.0"], ["branch", "release/2"]):  # fmt: skip
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    def tag(ref: str) -> str:
        done = subprocess.run([EXE, "ci", "tag", "--ref", ref], cwd=repo, capture_output=True,
                              text=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert tag("v1.4.0") == tag("refs/tags/v1.4.0") == "1.4.0"
    assert tag("release/2") == tag("refs/heads/release/2")


def test_runs_show_says_who_asked_who_voted_and_why_a_run_was_cancelled(
    env: dict[str, str],
) -> None:
    first = json.loads(sh(env, "deploy", "--env", "live", "--services", "api", "--tag", "5.0.0",
                          "--detach", "--json").stdout)["run"]  # fmt: skip
    second = json.loads(sh(env, "deploy", "--env", "live", "--services", "api", "--tag", "5.0.1",
                           "--detach", "--json").stdout)["run"]  # fmt: skip
    end = time.monotonic() + 60
    while (
        voted := sh(env, "approve", str(second), "--as", "ann", "--comment", "CAB-7 ok")
    ).returncode:
        assert time.monotonic() < end, voted.stderr
        time.sleep(0.3)
    while json.loads(sh(env, "runs", "show", str(second), "--json").stdout)["phase"] != "succeeded":
        assert time.monotonic() < end
        time.sleep(0.3)
    shown = sh(env, "runs", "show", str(first)).stdout
    assert "requested by bob at " in shown
    assert f"cancelled: superseded by run {second} (latest-only)" in shown
    voted = sh(env, "runs", "show", str(second)).stdout
    assert "CAB-7 ok" in voted and "approve" in voted and "ann" in voted
