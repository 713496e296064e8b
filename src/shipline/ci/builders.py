"""Image builders: buildah and podman (both run here as root with vfs storage), docker buildx
(needs a Docker engine, which these machines lack), and an in-memory fake for unit tests.
Tool failures become shipline errors at this boundary."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from shipline.domain.ports import LogSink
from shipline.errors import CheckFailed, TechnicalError
from shipline.process import classify_exit, stream


class BuildFailed(CheckFailed):
    """The build itself said no (a Dockerfile or code error): the step fails."""


class ToolMissing(TechnicalError):
    """The builder's command-line tool is not installed."""

    terminal = True


def run_tool(argv: list[str], log: LogSink, *, what: str) -> str:
    """Run a tool, stream its output to `log`, return its output. A non-zero exit is
    BuildFailed (the build said no) or ToolBroke (a registry down, the network, a signal)."""
    if shutil.which(argv[0]) is None:
        raise ToolMissing(f"{argv[0]} is not installed", hint=f"install {argv[0]} to {what}")
    code, lines = stream(argv, log)
    if code != 0:
        found = classify_exit(code, lines, f"{argv[0]} could not {what}")
        raise found if isinstance(found, TechnicalError) else BuildFailed(found.message)
    return "\n".join(lines)


def _build_flags(build_args: dict[str, str], platforms: list[str]) -> list[str]:
    flags: list[str] = []
    for key, value in sorted(build_args.items()):
        flags += ["--build-arg", f"{key}={value}"]
    if platforms:
        flags += ["--platform", ",".join(platforms)]
    return flags


class _OciCli:
    """Shared by the buildah and podman command lines, which take the same arguments."""

    tool = ""
    name = ""

    def __init__(self, storage_driver: str | None = "vfs") -> None:
        self._global = [f"--storage-driver={storage_driver}"] if storage_driver else []

    def build(
        self,
        context: str,
        dockerfile: str,
        image: str,
        *,
        platforms: list[str],
        build_args: dict[str, str],
        log: LogSink,
    ) -> None:
        argv = [
            self.tool,
            *self._global,
            "build" if self.tool == "podman" else "bud",
            "--format",
            "docker",
            "-f",
            dockerfile,
            "-t",
            image,
        ]
        run_tool([*argv, *_build_flags(build_args, platforms), context], log, what=f"build {image}")

    def push(self, image: str, destination: str, *, insecure: bool, log: LogSink) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            digest_file = Path(tmp) / "digest"
            argv = [self.tool, *self._global, "push", "--digestfile", str(digest_file)]
            if insecure:
                argv.append("--tls-verify=false")
            run_tool([*argv, image, f"docker://{destination}"], log, what=f"push {destination}")
            return digest_file.read_text().strip()

    def save(self, image: str, archive: str, *, log: LogSink) -> None:
        target = f"docker-archive:{archive}:{image.rsplit('/', 1)[-1]}"
        if self.tool == "podman":
            run_tool(
                [
                    self.tool,
                    *self._global,
                    "save",
                    "--format",
                    "docker-archive",
                    "-o",
                    archive,
                    image,
                ],
                log,
                what=f"save {image}",
            )
        else:
            run_tool([self.tool, *self._global, "push", image, target], log, what=f"save {image}")


class BuildahBuilder(_OciCli):
    """`buildah bud` / `buildah push`."""

    tool = name = "buildah"


class PodmanBuilder(_OciCli):
    """`podman build` / `podman push`."""

    tool = name = "podman"


class DockerBuildxBuilder:
    """`docker buildx build` (multi-platform); needs a running Docker engine."""

    name = "docker"

    def build(
        self,
        context: str,
        dockerfile: str,
        image: str,
        *,
        platforms: list[str],
        build_args: dict[str, str],
        log: LogSink,
    ) -> None:
        argv = ["docker", "buildx", "build", "--load", "-f", dockerfile, "-t", image]
        run_tool([*argv, *_build_flags(build_args, platforms), context], log, what=f"build {image}")

    def push(self, image: str, destination: str, *, insecure: bool, log: LogSink) -> str:
        run_tool(["docker", "tag", image, destination], log, what=f"tag {destination}")
        output = run_tool(["docker", "push", destination], log, what=f"push {destination}")
        for line in output.splitlines():
            if "digest: sha256:" in line:
                return "sha256:" + line.split("digest: sha256:")[1].split()[0]
        raise BuildFailed(f"docker push of {destination} reported no digest")

    def save(self, image: str, archive: str, *, log: LogSink) -> None:
        run_tool(["docker", "save", "-o", archive, image], log, what=f"save {image}")


class MemoryBuilder:
    """The fake: remembers builds and pushes; digests are hashes of the inputs."""

    name = "memory"

    def __init__(self) -> None:
        self.images: dict[str, str] = {}
        self.pushed: dict[str, str] = {}

    def build(
        self,
        context: str,
        dockerfile: str,
        image: str,
        *,
        platforms: list[str],
        build_args: dict[str, str],
        log: LogSink,
    ) -> None:
        path = (
            Path(context) / dockerfile if not Path(dockerfile).is_absolute() else Path(dockerfile)
        )
        if not path.exists():
            raise BuildFailed(f"no Dockerfile at {path}")
        self.images[image] = (
            "sha256:"
            + hashlib.sha256(
                path.read_bytes() + repr(sorted(build_args.items())).encode()
            ).hexdigest()
        )
        log(f"built {image}")

    def push(self, image: str, destination: str, *, insecure: bool, log: LogSink) -> str:
        if image not in self.images:
            raise BuildFailed(f"no image {image} to push")
        self.pushed[destination] = self.images[image]
        log(f"pushed {destination}")
        return self.images[image]

    def save(self, image: str, archive: str, *, log: LogSink) -> None:
        if image not in self.images:
            raise BuildFailed(f"no image {image} to save")
        Path(archive).write_text(self.images[image])


BUILDERS: dict[str, Any] = {
    "buildah": BuildahBuilder,
    "podman": PodmanBuilder,
    "docker": DockerBuildxBuilder,
    "memory": MemoryBuilder,
}
