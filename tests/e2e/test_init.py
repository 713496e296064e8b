"""`shipline init` on repositories made here: a Spring + Node + Go monorepo, a Python-only
repository, and one with shared protos. Each writes a configuration that validates, whose
`ci detect` over the repository's history marks the right services, and (the Python one)
whose `local` environment deploys."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

from tests.e2e.worker import EXE, running_worker, sh

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]


def _repo(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    _commit(folder, files, "start")
    return folder


def _commit(repo: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", message], cwd=repo, check=True)


def _cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SHIPLINE_CONFIG"}
    return subprocess.run([EXE, *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def _init(repo: Path) -> dict[str, dict[str, object]]:
    done = _cli(repo, "init", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert _cli(repo, "validate").returncode == 0
    _commit(repo, {}, "shipline.yaml")
    return {s["service"]: s for s in json.loads(done.stdout)["services"]}


def _detect(repo: Path) -> set[str]:
    done = _cli(repo, "ci", "detect", "--base", "HEAD~1", "--head", "HEAD", "--json")
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout)["services"])


def test_a_spring_node_go_monorepo(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "shop", {
        "services/orders/pom.xml": "<project><parent><artifactId>spring-boot-starter-parent"
                                   "</artifactId></parent></project>",
        "services/orders/src/main/resources/application.properties": "server.port=8081\n",
        "services/storefront/package.json": '{"dependencies": {"@nestjs/core": "^10"}}',
        "services/storefront/Dockerfile": "FROM node:20\nEXPOSE 3001\n",
        "services/payments/go.mod": "module payments\n",
        "services/payments/node_modules/x/package.json": "{}",  # never a service
        "docs/guide.md": "# guide\n",
    })  # fmt: skip
    found = _init(repo)
    assert {k: (v["stack"], v["port"]) for k, v in found.items()} == {
        "orders": ("springboot", 8081), "storefront": ("nestjs", 3001), "payments": ("go", 8080)}  # fmt: skip
    assert found["orders"]["healthPath"] == "/actuator/health"
    _commit(repo, {"services/payments/main.go": "package main\n"}, "pay")
    assert _detect(repo) == {"payments"}
    _commit(repo, {"docs/guide.md": "# more\n"}, "docs")
    assert _detect(repo) == set()
    again = _cli(repo, "init", "--yes")
    assert again.returncode == 2 and "exists" in again.stderr


APP = """import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok" if self.path == "/health" else b"tool says hello from " + os.getcwd().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def test_a_python_only_repository_deploys_locally_with_its_own_command(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "tool", {"pyproject.toml": "[project]\nname = 'tool'\n",
                                     "app.py": APP, "tool/__init__.py": ""})  # fmt: skip
    found = _init(repo)
    assert {k: v["stack"] for k, v in found.items()} == {"tool": "python"}
    assert found["tool"]["start"] == ["python3", "app.py"]  # it reads PORT: its own command
    _commit(repo, {"tool/cli.py": "print('hi')\n"}, "cli")
    assert _detect(repo) == {"tool"}
    with running_worker(
        repo / "shipline.yaml", tmp_path / "state", "dev", tmp_path / "w.log"
    ) as env:
        try:
            done = sh(env, "deploy", "--env", "local", "--tag", "0.1.0", "--json", timeout=240)
            assert done.returncode == 0, done.stdout[-1500:] + done.stderr
            rows = json.loads(sh(env, "status", "--json").stdout)
            assert [(r["service"], r["health"]) for r in rows] == [("tool", "healthy")]
            with urllib.request.urlopen(f"{rows[0]['address']}/", timeout=10) as answer:
                assert answer.read().decode() == f"tool says hello from {repo}"  # the app
        finally:
            sh(env, "down", "--env", "local")


def test_a_start_command_that_cannot_run_says_why(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "svc", {"go.mod": "module svc\n", "main.go": "package main\n"})
    _init(repo)
    config = (repo / "shipline.yaml").read_text()
    config = config.replace("paths: [\"**\"]", "paths: [\"**\"], start: {command: [no-such-program]"
                            ", workdir: .}")  # fmt: skip
    (repo / "shipline.yaml").write_text(config)
    assert _cli(repo, "validate").returncode == 0
    with running_worker(
        repo / "shipline.yaml", tmp_path / "state", "dev", tmp_path / "w.log"
    ) as env:
        try:
            done = sh(env, "deploy", "--env", "local", "--tag", "0.1.0", timeout=240)
            assert done.returncode != 0
            shown = sh(env, "runs", "show", "1", "--json").stdout
            assert "cannot start 'no-such-program'" in shown, shown[-2000:]
        finally:
            sh(env, "down", "--env", "local")


def test_shared_protos_mark_every_service_that_uses_them(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "chat", {
        "protos/chat.proto": 'syntax = "proto3";\n',
        "api/go.mod": "module api\n",
        "worker/mix.exs": "defmodule Worker.MixProject do\nend\n",
        "web/Dockerfile": "FROM scratch\nEXPOSE 8088\n"
                          "HEALTHCHECK CMD wget -q http://localhost:8088/ready || exit 1\n",
    })  # fmt: skip
    found = _init(repo)
    assert {k: v["stack"] for k, v in found.items()} == {
        "api": "go", "worker": "elixir", "web": "container"}  # fmt: skip
    assert (found["web"]["port"], found["web"]["healthPath"]) == (8088, "/ready")
    assert "stack" in found["web"]["guessed"]
    _commit(repo, {"protos/chat.proto": 'syntax = "proto3";\n// v2\n'}, "proto")
    assert _detect(repo) == {"api", "worker", "web"}
    _commit(repo, {"worker/lib/worker.ex": "defmodule Worker do\nend\n"}, "worker")
    assert _detect(repo) == {"worker"}
