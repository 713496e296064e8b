"""`shipline init`'s guesses, without I/O: a folder's stack from its build files, its port and
health path from its Dockerfile and settings, and the commented `shipline.yaml` that deploys
what was found. The caller reads the files; every guess says how sure it is."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

# stack -> (port, health path) when nothing in the service says otherwise
DEFAULTS: dict[str, tuple[int, str]] = {
    "springboot": (8080, "/actuator/health"),
    "nestjs": (3000, "/health"),
    "node": (3000, "/health"),
    "go": (8080, "/health"),
    "elixir": (4000, "/health"),
    "python": (8000, "/health"),
    "container": (8080, "/health"),
}
MARKERS = (
    "Dockerfile", "pom.xml", "build.gradle", "build.gradle.kts", "package.json", "go.mod",
    "mix.exs", "pyproject.toml", "requirements.txt",
)  # fmt: skip
SHARED_NAMES = {"proto", "protos", "protobuf", "shared", "common", "libs", "contracts", "schemas"}
EXPOSE = re.compile(r"^\s*EXPOSE\s+(\d+)", re.MULTILINE | re.IGNORECASE)
HEALTHCHECK = re.compile(
    r"^\s*HEALTHCHECK\b.*?https?://[^/\s:]+(?::(\d+))?(/[^\s\"'|;&]*)", re.MULTILINE | re.IGNORECASE
)
SERVER_PORT = re.compile(r"^\s*server\.port\s*[=:]\s*(\d+)", re.MULTILINE)
YAML_PORT = re.compile(r"^server:\s*\n(?:\s+.*\n)*?\s+port:\s*(\d+)", re.MULTILINE)


PYTHON_ENTRIES = ("app.py", "main.py", "server.py")  # read by the caller, where present
GO_ENTRY = "main.go"
PROCFILE_WEB = re.compile(r"^web:\s*(.+)$", re.MULTILINE)


@dataclass
class Guess:
    """What init believes about one service folder, and what it is unsure of."""

    name: str
    folder: str  # relative to the repository, '' for the root
    stack: str
    port: int
    health_path: str
    unsure: list[str] = field(default_factory=list)
    start: list[str] | None = None  # the service's own start command, where it is known
    start_from: str | None = None  # what said so (Procfile, package.json, app.py, main.go)


def guess_start(files: dict[str, str]) -> tuple[list[str] | None, str | None]:
    """The service's own start command and what says so, or (None, None): a Procfile's `web`
    process (a shell line that reads $PORT, run by sh), package.json's `start` script (npm),
    or a Python or Go entry point that reads PORT. The local target gives every replica its
    port in PORT; a program that does not read it cannot run there, so none is guessed."""
    web = PROCFILE_WEB.search(files.get("Procfile", ""))
    if web:
        return ["sh", "-c", web[1].strip()], "Procfile"
    if "package.json" in files:
        try:
            scripts = json.loads(files["package.json"]).get("scripts") or {}
        except (ValueError, AttributeError):
            scripts = {}
        if isinstance(scripts, dict) and isinstance(scripts.get("start"), str):
            return ["npm", "start"], "package.json"
    for entry in PYTHON_ENTRIES:
        text = files.get(entry, "")
        if "PORT" in text and "__main__" in text:
            return ["python3", entry], entry
    if "PORT" in files.get(GO_ENTRY, "") and "go.mod" in files:
        return ["go", "run", "."], GO_ENTRY
    return None, None


def service_name(folder: str, fallback: str) -> str:
    """A service name from a folder name: lower case, `-` for anything else."""
    base = folder.rstrip("/").rsplit("/", 1)[-1] or fallback
    name = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")
    return (name or "app")[:63].strip("-") or "app"


def guess_stack(files: dict[str, str]) -> tuple[str, bool]:
    """(stack, sure) from a folder's build files (name -> text)."""
    if "pom.xml" in files or "build.gradle" in files or "build.gradle.kts" in files:
        text = files.get("pom.xml", "") + files.get("build.gradle", "")
        text += files.get("build.gradle.kts", "")
        return "springboot", "spring-boot" in text or "springframework.boot" in text
    if "mix.exs" in files:
        return "elixir", True
    if "go.mod" in files:
        return "go", True
    if "package.json" in files:
        nest = "@nestjs/" in files["package.json"]
        return ("nestjs", True) if nest else ("node", True)
    if "pyproject.toml" in files or "requirements.txt" in files:
        return "python", True
    return "container", False


def guess_service(folder: str, files: dict[str, str], fallback: str) -> Guess:
    """Everything init guesses about one folder."""
    stack, sure = guess_stack(files)
    port, health = DEFAULTS[stack]
    unsure: list[str] = [] if sure else ["stack"]
    dockerfile = files.get("Dockerfile", "")
    settings = files.get("application.properties", "") + "\n" + files.get("application.yml", "")
    exposed = EXPOSE.search(dockerfile)
    check = HEALTHCHECK.search(dockerfile)
    configured = SERVER_PORT.search(settings) or YAML_PORT.search(settings)
    if check and check[1]:
        port = int(check[1])
    elif exposed:
        port = int(exposed[1])
    elif configured:
        port = int(configured[1])
    else:
        unsure.append("port")
    if check:
        health = check[2]
    elif stack != "springboot":
        unsure.append("health path")
    start, start_from = guess_start(files)
    return Guess(
        service_name(folder, fallback), folder, stack, port, health, unsure, start, start_from
    )


def _quote(text: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./][A-Za-z0-9_./*-]*", text):  # `*` first is a YAML alias
        return text
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def render_config(project: str, services: list[Guess], shared: list[str]) -> str:
    """A commented shipline.yaml: the services found, a `local` environment that runs them."""
    stacks = sorted({s.stack for s in services})
    lines = [
        "# Written by `shipline init`: check the guesses marked 'guessed', then",
        "#   shipline validate && shipline ci detect --base HEAD~1 --head HEAD",
        "# Paths are gitignore-style patterns from the repository root.",
        "apiVersion: shipline/v1",
        f"project: {service_name(project, 'project')}",
        "",
        "# Each stack's default port and health path; a service may set its own.",
        "stacks:",
    ]
    for stack in stacks:
        port, health = DEFAULTS[stack]
        lines.append(f"  {stack}: {{port: {port}, healthPath: {health}}}")
    lines += ["", "services:"]
    for guess in services:
        paths = f"{guess.folder}/**" if guess.folder else "**"
        entry = (
            f"  - {{name: {guess.name}, stack: {guess.stack}, port: {guess.port},"
            f" healthPath: {_quote(guess.health_path)}, paths: [{_quote(paths)}]"
        )
        if shared:
            entry += ", sharedPaths: [" + ", ".join(_quote(f"{s}/**") for s in shared) + "]"
        if guess.folder:
            entry += f", context: {_quote(guess.folder)}"
        if guess.start:
            command = ", ".join(_quote(part) for part in guess.start)
            workdir = "" if guess.folder else ", workdir: ."
            entry += f",\n      start: {{command: [{command}]{workdir}}}"
        entry += "}"
        notes = [f"guessed: {', '.join(guess.unsure)}"] if guess.unsure else []
        if guess.start_from:
            notes.append(f"start command from {guess.start_from}")
        if notes:
            first, _, rest = entry.partition("\n")
            entry = f"{first}  # {'; '.join(notes)}" + (f"\n{rest}" if rest else "")
        lines.append(entry)
    lines += [
        "",
        "tiers:",
        "  nonprod: {resources: {minReplicas: 1, maxReplicas: 2}}",
        "",
        "# `local`: each service runs on this machine, behind a gateway port (`shipline status`",
        "# shows where): its own `start` command, given its port in PORT; shipline's demo",
        "# workload stands in for a service without one.",
        "targets:",
        "  here: {type: local}",
        "",
        "environments:",
        "  - {name: local, cluster: local, namespace: local, tier: nonprod, target: here}",
        "ladder: [local]",
        "",
        "# A change to these rebuilds every service.",
        "ci:",
        "  buildAllPaths: [shipline.yaml]",
        "",
    ]
    return "\n".join(lines)
