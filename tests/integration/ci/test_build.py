"""A real build: a FROM-scratch service built with buildah, scanned by Trivy and hadolint,
pushed to a local registry (Debian's docker-registry), and a manifest with the registry's digest."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ci_repo import commit_all

EXE = str(Path(sys.executable).parent / "shipline")
BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if Path(p).exists()), None)

pytestmark = [
    pytest.mark.skipif(
        shutil.which("buildah") is None,
        reason="buildah is not installed (scripts/test installs it)",
    ),
    pytest.mark.skipif(
        shutil.which("docker-registry") is None,
        reason="docker-registry is not installed (scripts/test installs it)",
    ),
    pytest.mark.skipif(
        BUSYBOX is None, reason="busybox-static is not installed (scripts/test installs it)"
    ),
]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    port = _port()
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\n"
    )
    with open(tmp_path / "registry.log", "wb") as log:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=log
        )
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


CONFIG = """
project: ci-demo
stacks:
  go:
    port: 8080
    healthPath: /health
    paths: ['docker/go/**']
    build:
      cacheKey: go-$(goVersion)-{{hash:Dockerfile}}
      setup: ['test -f busybox']
      test: ['./busybox true', './busybox echo tests passed']
      build: ['./busybox echo built $SHIPLINE_SERVICE $SHIPLINE_VERSION']
    variableGroups: [go-vars]
services:
  - {{name: hello, stack: go, paths: ['services/hello/**'], image: quikapp/hello}}
variableGroups:
  go-vars: {{variables: {{goVersion: '1.21'}}}}
ci:
  builder: buildah
  registry: {registry}
  insecureRegistry: true
  concurrency: 2
"""
DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["/bin/busybox", "true"]
ENTRYPOINT ["/bin/busybox", "httpd", "-f", "-p", "8080"]
"""


def test_build_scan_push_manifest_release(tmp_path: Path, registry: str) -> None:
    repo = tmp_path / "repo"
    service = repo / "services" / "hello"
    service.mkdir(parents=True)
    shutil.copy(BUSYBOX, service / "busybox")  # type: ignore[arg-type]
    (service / "Dockerfile").write_text(DOCKERFILE)
    (repo / "shipline.yaml").write_text(CONFIG.format(registry=registry))
    commit_all(repo, "hello", tag="v1.4.0")
    env = {
        **os.environ,
        "SHIPLINE_CONFIG": str(repo / "shipline.yaml"),
        "SHIPLINE_HOME": str(tmp_path / "state"),
    }
    env.pop("SHIPLINE_DATABASE_URL", None)
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [EXE, "worker", "--poll-seconds", "0.1"], env=env, stdout=log, stderr=log
        )
    try:
        manifest_path = tmp_path / "manifest.json"
        done = subprocess.run(
            [
                EXE,
                "ci",
                "build",
                "--services",
                "all",
                "--ref",
                "refs/tags/v1.4.0",
                "--strategy",
                "semver",
                "--push",
                "--scan",
                "--manifest",
                str(manifest_path),
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        manifest = json.loads(manifest_path.read_text())
        entry = manifest["services"]["hello"]
        assert (entry["version"], entry["tag"], entry["stack"]) == ("1.4.0", "1.4.0", "go")
        assert entry["image"] == f"{registry}/quikapp/hello:1.4.0"
        assert entry["tests"] == {"commands": 2, "passed": 2}
        assert (
            entry["cacheKey"].startswith("go-1.21-")
            and len(entry["cacheKey"]) == len("go-1.21-") + 16
        )
        request = urllib.request.Request(
            f"http://{registry}/v2/quikapp/hello/manifests/1.4.0",
            method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        with urllib.request.urlopen(request) as response:
            assert entry["digest"] == response.headers["Docker-Content-Digest"]
        tools = {scan["tool"] for scan in entry["scans"]}
        assert tools == {"hadolint", "trivy-config", "trivy-image", "trivy-secret"}
        findings = json.loads(done.stdout)["findings"]  # the summary `ci build` prints
        assert {(f["service"], f["scanner"]) for f in findings} == {("hello", t) for t in tools}
        assert all(f["blocking"] == 0 for f in findings)  # no failOnSeverities: nothing blocks
        run_folder = tmp_path / "state" / "artifacts" / f"run-{json.loads(done.stdout)['id']}"
        for scan in entry["scans"]:
            for report in scan["reports"]:
                assert Path(report).is_file()
                assert Path(report).is_relative_to(run_folder / "hello"), "reports are kept per run"
        assert any(r.endswith(".sarif") for s in entry["scans"] for r in s["reports"])
        assert manifest["repositoryScan"]["tool"] == "gitleaks"
        assert manifest["commit"] and len(manifest["commit"]) == 40
        run = json.loads(done.stdout)["id"]
        logs = subprocess.run(
            [EXE, "runs", "logs", str(run), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        lines = [entry["line"] for entry in json.loads(logs.stdout)["logs"]]
        assert "tests passed" in lines and "built hello 1.4.0" in lines
        created = subprocess.run(
            [EXE, "release", "create", "--from-manifest", str(manifest_path), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        release = json.loads(created.stdout)
        assert release["name"] == "1.4.0"
        assert release["services"]["hello"]["digest"] == entry["digest"]
        again = subprocess.run(
            [EXE, "release", "create", "--from-manifest", str(manifest_path)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert again.returncode == 2 and "already exists" in again.stderr
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
