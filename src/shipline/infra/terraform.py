"""Terraform as the `InfraTool` port: init with the environment's backend, validate, plan into a
saved file, apply exactly that file, read outputs, force-unlock.

Secrets reach Terraform only through its process environment (TF_VAR_*, backend credentials
such as PG_CONN_STR), never as arguments. What Terraform prints is streamed to the run's log
(masked there); what it returns as JSON (a plan, outputs) holds values and is never logged.
Terraform's errors become shipline's: a stale plan is StalePlan, a held lock StateLocked with
the lock's id, a missing binary a TechnicalError that says so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipline.domain.ports import InfraWork, LogSink
from shipline.errors import CheckFailed, StalePlan, StateLocked, TechnicalError, UserError
from shipline.process import classify_exit, stream

BACKEND = re.compile(r'^\s*backend\s+"([A-Za-z0-9_-]+)"', re.MULTILINE)
LOCK_ID = re.compile(r"^\s*ID:\s+(\S+)", re.MULTILINE)
# The host's variables a Terraform process does not get: shipline's own keys, and any TF_VAR_
# that did not come from the environment's variable groups.
HIDDEN = re.compile(r"^(SHIPLINE_|TF_VAR_|TF_DATA_DIR$|PG_CONN_STR$|ARM_ACCESS_KEY$)")


class TerraformMissing(TechnicalError):
    """No terraform binary here."""

    terminal = True


def declared_backend(root: Path) -> str | None:
    """The backend type the root module declares (`backend "pg" {}`), or None."""
    for path in sorted(root.glob("*.tf")):
        match = BACKEND.search(path.read_text(encoding="utf-8", errors="replace"))
        if match:
            return match[1]
    return None


class TerraformInfra:
    """Runs the `terraform` binary (found on PATH, or given)."""

    def __init__(self, binary: str | None = None, environ: Mapping[str, str] | None = None):
        self._environ = dict(os.environ if environ is None else environ)
        found = binary or shutil.which("terraform", path=self._environ.get("PATH"))
        if not found:
            raise TerraformMissing(
                "terraform is not installed here",
                hint="install Terraform (https://developer.hashicorp.com/terraform/install)"
                " on the worker's machine",
            )
        self.binary = found

    def _env(self, work: InfraWork) -> dict[str, str]:
        env = {k: v for k, v in self._environ.items() if not HIDDEN.match(k)}
        config_file = env.get("TF_CLI_CONFIG_FILE")
        if config_file and not Path(config_file).exists():
            env.pop("TF_CLI_CONFIG_FILE")  # a missing CLI configuration only prints a warning
        env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", TF_DATA_DIR=str(work.data_dir))
        env.update(work.env)
        return env

    def _run(self, work: InfraWork, args: list[str], log: LogSink, what: str) -> list[str]:
        argv = [self.binary, f"-chdir={work.root}", *args, "-no-color"]
        try:
            code, lines = stream(argv, log, env=self._env(work))
        except OSError as exc:
            raise TerraformMissing(f"terraform could not run: {exc.strerror}") from exc
        if code == 0:
            return lines
        text = "\n".join(lines)
        if "Saved plan is stale" in text:
            raise StalePlan(
                "the approved plan is stale: the state changed after it was made",
                hint="nothing was applied; plan again and approve the new plan",
            )
        if "Error acquiring the state lock" in text:
            held = LOCK_ID.search(text)
            lock_id = held[1] if held else None
            raise StateLocked(
                f"{what}: the state is locked by another operation"
                + (f" (lock {lock_id})" if lock_id else ""),
                lock_id=lock_id,
                hint="wait for it to finish; if it died holding the lock:"
                f" shipline infra unlock --env ENV --lock-id {lock_id or 'ID'}",
            )
        raise classify_exit(code, lines, what)

    def _capture(self, work: InfraWork, args: list[str], what: str) -> Any:
        """A command whose JSON answer holds values: captured, never logged."""
        argv = [self.binary, f"-chdir={work.root}", *args]
        done = subprocess.run(
            argv, env=self._env(work), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise classify_exit(done.returncode, done.stderr.splitlines(), what)
        try:
            return json.loads(done.stdout or "null")
        except ValueError as exc:
            raise TechnicalError(f"{what}: terraform answered no JSON") from exc

    def version(self) -> str:
        """`terraform version -json`'s version."""
        done = subprocess.run(
            [self.binary, "version", "-json"], capture_output=True, text=True, check=False
        )
        try:
            return str(json.loads(done.stdout)["terraform_version"])
        except (ValueError, KeyError) as exc:
            raise TechnicalError("terraform did not say its version") from exc

    def init(self, work: InfraWork, log: LogSink) -> None:
        """Initialise the working data for the environment's backend, then validate."""
        if not work.root.is_dir():
            raise UserError(f"the Terraform root {work.root} is not a folder")
        declared = declared_backend(work.root)
        if declared != work.backend and not (declared is None and work.backend == "local"):
            raise UserError(
                f"the root module {work.root} declares "
                + (f'backend "{declared}"' if declared else "no backend")
                + f", but the environment's backend is {work.backend}",
                hint=f'declare `terraform {{ backend "{work.backend}" {{}} }}` in the root module'
                " (shipline fills in its settings per environment)",
            )
        if declared is None:
            raise UserError(
                f"the root module {work.root} declares no backend: Terraform would keep its"
                " state inside the module folder",
                hint='declare `terraform { backend "local" {} }` (shipline keeps each'
                " environment's state under .shipline/infra/) or another backend",
            )
        work.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings = [f"-backend-config={k}={v}" for k, v in sorted(work.backend_config.items())]
        self._run(work, ["init", "-input=false", "-reconfigure", *settings], log, "terraform init")
        self._run(work, ["validate"], log, "terraform validate")

    def plan(
        self, work: InfraWork, out: Path, *, destroy: bool, log: LogSink
    ) -> Mapping[str, object]:
        """init → validate → plan saved in `out` → its JSON."""
        self.init(work, log)
        args = [
            "plan",
            "-input=false",
            f"-lock-timeout={work.lock_timeout_seconds}s",
            f"-out={out}",
        ]
        args += [f"-var-file={path}" for path in work.var_files]
        if destroy:
            args.append("-destroy")
        log(
            f"state lock: waiting up to {work.lock_timeout_seconds} s if another operation holds it"
        )
        self._run(work, args, log, "terraform plan")
        shown: Mapping[str, object] = self._capture(work, ["show", "-json", str(out)], "show")
        return shown

    def apply(self, work: InfraWork, plan: Path, *, log: LogSink) -> None:
        """Apply the saved plan; Terraform refuses a stale one (StalePlan)."""
        if not (work.data_dir / "terraform.tfstate").exists():  # a worker that never planned
            self.init(work, log)
        wait = work.lock_timeout_seconds
        log(f"state lock: waiting up to {wait} s if another operation holds it")
        self._run(work, ["apply", "-input=false", f"-lock-timeout={wait}s", str(plan)], log,
                  "terraform apply")  # fmt: skip

    def outputs(self, work: InfraWork, *, log: LogSink) -> dict[str, tuple[object, bool]]:
        """`terraform output -json`: name -> (value, sensitive)."""
        found = self._capture(work, ["output", "-json"], "terraform output") or {}
        return {
            str(name): (entry.get("value"), bool(entry.get("sensitive")))
            for name, entry in found.items()
        }

    def unlock(self, work: InfraWork, lock_id: str, *, log: LogSink) -> None:
        """`terraform force-unlock -force ID`."""
        if not (work.data_dir / "terraform.tfstate").exists():
            self.init(work, log)
        try:
            self._run(work, ["force-unlock", "-force", lock_id], log, "terraform force-unlock")
        except CheckFailed as exc:
            raise CheckFailed(
                f"lock {lock_id} could not be released: {exc.message}",
                hint="check the id: `shipline infra plan` names the lock it met",
            ) from exc
