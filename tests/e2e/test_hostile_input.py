"""shipline attacked with its own inputs, through the installed CLI as a hostile user would:

- configurations built to hang or exhaust the machine (a 50 MB file, a FIFO, a device, a symlink
  loop, and every case under tests/unit/config/broken) end in a located error and exit 2, within
  5 s of CPU and 300 MB, never a traceback;
- bad command lines end in one message and exit 2; names that try to leave the state folder
  touch and show nothing outside it;
- a vote that would not count says so (exit 2) and is audited as not counted;
- 50 parallel `secrets set` keep 50 secrets;
- a secret typed into `--set` is kept as a reference (never on disk) and a restarted worker
  brings the service back with it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.test_local_deploys import PROJECT as LOCAL_PROJECT
from tests.e2e.test_local_deploys import _replica_pids, _wait_until, _workloads
from tests.e2e.worker import EXE, running_worker, sh

BROKEN = Path(__file__).parents[1] / "unit" / "config" / "broken"
GOOD = (BROKEN / "variable-cycle" / "shipline.yaml").read_text().split("variableGroups:")[0]
CPU_SECONDS = 5.0
MAX_RSS_MB = 300
LOCATED = r"^shipline\.yaml:\d+:\d+: "


def _measured(folder: Path, *args: str) -> tuple[int, str, float, float]:
    """Run `shipline validate` in `folder`: (exit code, stderr, CPU seconds, peak RSS in MB).
    A run that hangs is killed after 60 s (and fails the test).

    The peak is the child's own high-water mark (VmHWM, which starts afresh at exec), read every
    few milliseconds while it runs: a forked child's `ru_maxrss` would include this test
    process's size at the fork."""
    env = {**os.environ, "SHIPLINE_HOME": str(folder / ".state")}
    env.pop("SHIPLINE_CONFIG", None)
    process = subprocess.Popen(
        [EXE, *args, "validate"], cwd=folder, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    peak_kb = 0
    while True:
        peak_kb = max(peak_kb, _high_water_kb(process.pid))
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)  # the child's own CPU time
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"validate in {folder.name} hung")
        time.sleep(0.003)
    process.returncode = code = os.waitstatus_to_exitcode(status)
    with process.stderr:
        err = process.stderr.read().decode(errors="replace")
    return code, err, usage.ru_utime + usage.ru_stime, peak_kb / 1024


def _high_water_kb(pid: int) -> int:
    """VmHWM of a running process (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return 0


def _project(tmp_path: Path, extra: str = "") -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "shipline.yaml").write_text(GOOD + extra)
    return folder


def _huge(folder: Path) -> None:
    with open(folder / "shipline.yaml", "a") as handle:
        line = "# " + "x" * 1022 + "\n"
        for _ in range(50 * 1024):
            handle.write(line)


GENERATED = {
    "50-megabyte-file": ("", _huge, "bytes; a configuration file may be at most"),
    "fifo-include": ("include: [pipe.yaml]\n", lambda f: os.mkfifo(f / "pipe.yaml"),
                     "pipe.yaml is not a regular file"),
    "symlink-loop-include": ("include: [loop.yaml]\n",
                             lambda f: os.symlink("loop.yaml", f / "loop.yaml"),
                             "cannot read loop.yaml"),
    "device-through-a-symlink": ("include: [zero.yaml]\n",
                                 lambda f: os.symlink("/dev/zero", f / "zero.yaml"),
                                 "points outside the project"),
    "folder-include": ("include: [conf.d]\n", lambda f: (f / "conf.d").mkdir(),
                       "conf.d is not a regular file"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(GENERATED), ids=sorted(GENERATED))
def test_configurations_that_would_hang_or_exhaust_are_refused(case: str, tmp_path: Path) -> None:
    extra, make, message = GENERATED[case]
    folder = _project(tmp_path, extra)
    make(folder)
    code, err, cpu, rss = _measured(folder)
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err and "internal error" not in err
    assert err.splitlines()[0].startswith("shipline.yaml:"), err
    assert cpu < CPU_SECONDS and rss < MAX_RSS_MB, (cpu, rss)


def test_every_broken_configuration_stays_within_limits(tmp_path: Path) -> None:
    """The whole table of broken configurations (tests/unit/config/broken), each measured."""
    cases = sorted(p for p in BROKEN.iterdir() if p.is_dir())
    assert len(cases) >= 60
    worst = (0.0, 0.0)
    for case in cases:
        copy = tmp_path / case.name
        shutil.copytree(case, copy, symlinks=True)
        code, err, cpu, rss = _measured(copy)
        assert code == 2 and "Traceback" not in err and "internal error" not in err, case.name
        assert cpu < CPU_SECONDS and rss < MAX_RSS_MB, (case.name, cpu, rss)
        worst = (max(worst[0], cpu), max(worst[1], rss))
    print(f"worst of {len(cases)}: {worst[0]:.2f} s CPU, {worst[1]:.0f} MB")


# --- command lines ----------------------------------------------------------------------------

BAD_COMMANDS = [
    (["logs", "--env", "dev", "--service", "../../../outside/x"], "unknown service"),
    (["logs", "--env", "dev", "--service", "api", "--lines", "-3"], "--lines"),
    (["logs", "--env", "../..", "--service", "api"], "unknown environment"),
    (["history", "--env", "dev", "--service", "../../outside/x"], "unknown service"),
    (["secrets", "set", ""], "cannot be empty"),
    (["secrets", "set", "../../outside/evil"], "invalid secret name"),
    (["secrets", "set", "$(id)"], "invalid secret name"),
    (["secrets", "set", "a b"], "invalid secret name"),
    (["secrets", "rm", "../../outside/x.log"], "invalid secret name"),
    (["secrets", "list", "--store", "../x"], "unknown secret store"),
    (["deploy", "--env", "dev", "--services", "api", "--tag", "../1"], "not a valid image tag"),
    (["deploy", "--env", "dev", "--services", "../x", "--tag", "1"], "unknown service"),
    (["deploy", "--env", "dev", "--services", "api", "--tag", "1", "--set", "PYTHONPATH=/tmp"],
     "reserved"),
    (["deploy", "--env", "dev", "--services", "api", "--tag", "1", "--set", "a b=1"],
     "variable name"),
    (["deploy", "--env", "dev", "--services", "api", "--tag", "1", "--set", "$(id)=1"],
     "variable name"),
    (["rollback", "--env", "dev", "--services", "api", "--revision", "999"], "no revisions"),
    (["rollback", "--env", "dev", "--services", "api", "--revision", "-1"], "--revision"),
    (["scale", "--env", "dev", "--services", "api", "--replicas", "-1"], "replicas"),
    (["approve", "1", "--as", ""], "cannot be empty"),
    (["approve", "1", "--as", "qu\u0456nn"], "mix scripts"),
    (["reject", "1", "--as", "quinn\u200b"], "U+200B"),
    (["audit", "verify", "--head", "not-a-head"], "SEQ:MAC"),
    (["runs", "show", "nope"], "integer"),
    (["runs", "list", "--limit", "0"], "--limit"),
    (["audit", "list", "--since", "yesterday"], "not a time"),
    (["audit", "list", "--until", "2026-11-31"], "not a time"),
    (["trigger", "--ref", "refs/tags/", "--dry-run"], "names no branch"),
]  # fmt: skip


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A project inside tmp/sandbox, with a file planted beside it that must stay unseen."""
    project = tmp_path / "sandbox" / "project"
    shutil.copytree(LOCAL_PROJECT.parent, project)
    outside = tmp_path / "sandbox" / "outside"
    outside.mkdir()
    (outside / "x.log").write_text("PLANTED-OUTSIDE\n")
    env = {
        **os.environ,
        "SHIPLINE_CONFIG": str(project / "shipline.yaml"),
        "SHIPLINE_HOME": str(project / ".shipline"),
        "SHIPLINE_USER": "ann",
    }
    env.pop("SHIPLINE_DATABASE_URL", None)
    return project, env


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` but `skip` (the state folder): files with size and mtime."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (0, 0)
        for p in root.rglob("*")
        if skip not in p.parents and p != skip
    }


@pytest.mark.parametrize(
    ("args", "message"), BAD_COMMANDS, ids=[" ".join(a)[:40] for a, _ in BAD_COMMANDS]
)
def test_a_bad_command_line_is_one_message_and_exit_2(
    args: list[str], message: str, sandbox: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    project, env = sandbox
    before = _snapshot(tmp_path, project / ".shipline")
    done = subprocess.run(
        [EXE, *args], env=env, input="value\n", capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert [line for line in done.stderr.splitlines() if not line.startswith(" ")][1:] == []
    assert "PLANTED" not in done.stdout + done.stderr
    assert _snapshot(tmp_path, project / ".shipline") == before, "something outside changed"


# --- votes ------------------------------------------------------------------------------------

TWO_GROUPS = """
project: votes
stacks:
  go: {port: 8080, healthPath: /health}
services:
  - {name: api, stack: go}
tiers:
  nonprod: {}
targets:
  fake: {type: memory}
approverGroups:
  leads: {members: [ann, ' Quinn']}
  ops: {members: [olga]}
environments:
  - name: qa
    cluster: c
    namespace: q
    tier: nonprod
    target: fake
    approvals: {groups: [leads, ops], mode: all}
ladder: [qa]
"""


def test_votes_that_do_not_count_say_so(tmp_path: Path) -> None:
    project = tmp_path / "shipline.yaml"
    project.write_text(TWO_GROUPS)
    with running_worker(project, tmp_path / "state", "bob", tmp_path / "worker.log") as env:
        started = sh(env, "deploy", "--env", "qa", "--services", "api", "--tag", "1.0.0",
                     "--detach", "--json")  # fmt: skip
        run = str(json.loads(started.stdout)["run"])
        assert _wait_until(
            lambda: json.loads(sh(env, "runs", "show", run, "--json").stdout)["phase"] == "waiting"
        )
        first = sh(env, "approve", run, "--as", "QUINN")
        assert first.returncode == 0, first.stderr
        assert "approved by quinn; still needed: ops" in first.stderr
        again = sh(env, "approve", run, "--as", " quinn")
        assert again.returncode == 2, again.stderr
        assert "vote not counted: 'quinn' already voted" in again.stderr
        assert "still needed: ops" in again.stderr
        same_group = sh(env, "approve", run, "--as", "ann")
        assert same_group.returncode == 2
        assert "already approved" in same_group.stderr
        shown = json.loads(sh(env, "runs", "show", run, "--json").stdout)
        waiting = next(s for s in shown["stages"] if s["phase"] == "waiting")
        assert "from ops" in waiting["reason"] and "leads" not in waiting["reason"]
        last = sh(env, "approve", run, "--as", "olga")
        assert last.returncode == 0, last.stderr
        audit = json.loads(sh(env, "audit", "list", "--json").stdout)
        not_counted = [r for r in reversed(audit) if r["action"] == "approval.not-counted"]
        assert [(r["actor"], r["details"]["reason"]) for r in not_counted] == [  # oldest first
            ("quinn", "'quinn' already voted"),
            ("ann", "the groups of 'ann' have already approved"),
        ]
        assert len([r for r in audit if r["action"] == "approval.approve"]) == 2


# --- concurrent writers and secrets in run parameters ------------------------------------------


def test_fifty_parallel_secret_sets_keep_fifty(sandbox: tuple[Path, dict[str, str]]) -> None:
    _, env = sandbox
    writers = [
        subprocess.Popen(
            [EXE, "secrets", "set", f"PARALLEL-{i}"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(50)
    ]
    for i, writer in enumerate(writers):
        writer.communicate(f"value-{i}\n".encode(), timeout=120)
        assert writer.returncode == 0
    names = json.loads(sh(env, "secrets", "list", "--json").stdout)["names"]
    assert sorted(n for n in names if n.startswith("PARALLEL-")) == sorted(
        f"PARALLEL-{i}" for i in range(50)
    )


SECRET_TYPED = "typed-into-set-4417"


def _files_holding(folder: Path, value: bytes) -> list[str]:
    """Files under `folder` (the encrypted secret store aside) whose bytes contain `value`."""
    found = []
    for path in folder.rglob("*"):
        if path.name == "secrets.enc":
            continue
        try:
            if path.is_file() and value in path.read_bytes():
                found.append(str(path))
        except FileNotFoundError:
            continue  # a journal that came and went
    return found


def test_secrets_in_run_parameters_are_references_and_survive_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "state"
    env = {
        **os.environ,
        "SHIPLINE_CONFIG": str(LOCAL_PROJECT),
        "SHIPLINE_HOME": str(home),
        "SHIPLINE_USER": "dev",
    }
    env.pop("SHIPLINE_DATABASE_URL", None)
    token = subprocess.run(
        [EXE, "secrets", "set", "DEV-API-TOKEN"], input=SECRET_TYPED + "\n", env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert token.returncode == 0

    def start(log: str) -> subprocess.Popen[bytes]:
        with open(tmp_path / log, "wb") as out:
            return subprocess.Popen(
                [EXE, "worker", "--poll-seconds", "0.1"], env=env, stdout=out, stderr=out
            )

    worker = start("first.log")
    try:
        deployed = sh(
            env, "deploy", "--env", "dev", "--services", "api", "--tag", "1.0.0",
            "--set", "FROM_REFERENCE=$(apiToken)", "--set", f"TYPED=x-{SECRET_TYPED}-y",
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert sh(env, "worker", "--stop").returncode == 0
        worker.wait(timeout=60)
        assert _replica_pids(str(home)) == []
        worker = start("second.log")

        def serving() -> bool:
            return len(_replica_pids(str(home))) == 1

        assert _wait_until(serving), (tmp_path / "second.log").read_text()
        environ_of = Path(f"/proc/{_replica_pids(str(home))[0]}/environ").read_bytes()
        assert f"FROM_REFERENCE={SECRET_TYPED}".encode() in environ_of
        assert f"TYPED=x-{SECRET_TYPED}-y".encode() in environ_of
        assert _files_holding(home, SECRET_TYPED.encode()) == []
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
    assert _wait_until(lambda: _workloads(str(home)) == [], 20)
