"""One contract for every image builder we can run here, and the scanners on the reference
Dockerfiles. docker buildx needs a Docker engine, which these machines lack: its adapter is
exercised only for the command it builds."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from shipline.ci import scanners
from shipline.ci.builders import (
    BuildahBuilder,
    BuildFailed,
    MemoryBuilder,
    PodmanBuilder,
    ToolMissing,
)
from shipline.domain.ports import ImageBuilder
from shipline.process import ToolBroke
from tests.conftest import QUIKAPP

BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if Path(p).exists()), None)
STACKS = ["springboot", "nestjs", "go", "elixir", "python"]


def _builder(kind: str) -> Any:
    if kind == "memory":
        return MemoryBuilder()
    tool = {"buildah": BuildahBuilder, "podman": PodmanBuilder}[kind]
    if shutil.which(kind) is None:
        pytest.skip(f"{kind} is not installed (scripts/test installs it)")
    return tool()


@pytest.mark.parametrize("kind", ["memory", "buildah", "podman"])
def test_builder_contract(kind: str, tmp_path: Path) -> None:
    if BUSYBOX is None:
        pytest.skip("busybox-static is not installed (scripts/test installs it)")
    builder = _builder(kind)
    assert isinstance(builder, ImageBuilder)
    shutil.copy(BUSYBOX, tmp_path / "busybox")
    (tmp_path / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox"]\n'
    )
    lines: list[str] = []
    image = f"localhost/contract-{kind}:1"
    builder.build(
        str(tmp_path),
        str(tmp_path / "Dockerfile"),
        image,
        platforms=[],
        build_args={"A": "1"},
        log=lines.append,
    )
    archive = tmp_path / "image.tar"
    builder.save(image, str(archive), log=lines.append)
    assert archive.stat().st_size > 0
    (tmp_path / "Bad").write_text("FROM scratch\nCOPY missing-file /x\n")
    with pytest.raises(BuildFailed):
        builder.build(
            str(tmp_path),
            str(tmp_path / ("Bad" if kind != "memory" else "Nope")),
            f"{image}-bad",
            platforms=[],
            build_args={},
            log=lines.append,
        )
    if kind != "memory":
        # A registry that is down is something broken, not a build that said no.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]  # nothing listens once the socket closes
        with pytest.raises(ToolBroke) as broke:
            builder.push(image, f"127.0.0.1:{closed}/contract:1", insecure=True, log=lines.append)
        assert not isinstance(broke.value, BuildFailed)


def test_missing_tool_is_technical_and_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissing) as info:
        BuildahBuilder().build(
            ".", "Dockerfile", "x:1", platforms=[], build_args={}, log=lambda line: None
        )
    assert info.value.terminal


@pytest.mark.parametrize("stack", STACKS)
def test_reference_dockerfiles_pass_hadolint(stack: str, tmp_path: Path) -> None:
    report = scanners.hadolint(str(QUIKAPP.parent / "docker" / stack / "Dockerfile"), tmp_path)
    assert sum(report.counts.values()) == 0, Path(report.reports[0]).read_text()


def test_reference_dockerfiles_pass_trivy_config(tmp_path: Path) -> None:
    report = scanners.trivy("config", str(QUIKAPP.parent / "docker"), tmp_path)
    assert report.at_or_above(["HIGH", "CRITICAL"]) == 0
    sarif = Path(report.reports[1]).read_text()
    assert '"version": "2.1.0"' in sarif


def test_reference_dockerfiles_say_what_the_spec_says() -> None:
    for stack in STACKS:
        text = (QUIKAPP.parent / "docker" / stack / "Dockerfile").read_text()
        assert text.count("FROM ") >= 2, f"{stack}: multi-stage"
        assert "HEALTHCHECK" in text, stack
        user = [line for line in text.splitlines() if line.startswith("USER ")]
        assert user and not user[-1].startswith("USER 0") and "root" not in user[-1], (
            f"{stack}: non-root"
        )
    assert "FROM scratch" in (QUIKAPP.parent / "docker" / "go" / "Dockerfile").read_text()


def test_trivy_finds_a_misconfiguration_and_hadolint_a_bad_practice(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Dockerfile").write_text(
        "FROM ubuntu:latest\nRUN apt-get update && apt-get install -y curl\n"
    )
    assert (
        scanners.trivy("config", str(bad), tmp_path / "out").at_or_above(
            ["HIGH", "CRITICAL", "MEDIUM", "LOW"]
        )
        > 0
    )
    lint = scanners.hadolint(str(bad / "Dockerfile"), tmp_path / "out")
    assert sum(lint.counts.values()) > 0


def test_gitleaks_finds_and_redacts_a_committed_secret(tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    key = "AKIA" + "QWERTYUIOPASDFGH"
    (repo / "config.py").write_text(f'aws_access_key_id = "{key}"\n')
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
        check=True,
    )
    report = scanners.gitleaks(str(repo), tmp_path / "out")
    assert report.at_or_above(["HIGH"]) >= 1
    assert key not in Path(report.reports[0]).read_text()
