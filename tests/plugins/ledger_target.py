"""A deploy target written outside shipline: it keeps desired state in a JSON ledger file.

It uses only shipline's public domain types and errors, and is found through the
`shipline.targets` entry point that `tests/e2e/test_target_plugin.py` installs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from shipline.domain.deploy import DeployPlan, DeploySpec, Revision, ServiceState, plan_change
from shipline.domain.health import HealthBounds, Observation
from shipline.domain.ports import LogSink, TargetContext
from shipline.errors import NotFoundError


class LedgerTarget:
    """Every apply appends to `<state>/ledger.json`; nothing runs."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "ledger.json"

    def _read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def _revisions(self, environment: str, service: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._read().get(f"{environment}/{service}", [])
        if not found:
            raise NotFoundError(f"{service} is not in the ledger of {environment}")
        return found

    def plan(self, spec: DeploySpec) -> DeployPlan:
        try:
            last = self._revisions(spec.environment, spec.service)[-1]
            current: DeploySpec | None = DeploySpec.from_stored(last["spec"], {})
        except NotFoundError:
            current = None
        return plan_change(current, replace(spec, env={}))

    def apply(
        self,
        spec: DeploySpec,
        *,
        cause: str = "deploy",
        log: LogSink = print,
        change: str | None = None,
    ) -> int:
        data = self._read()
        entries = data.setdefault(f"{spec.environment}/{spec.service}", [])
        done = [i + 1 for i, e in enumerate(entries) if change and e.get("change") == change]
        if done:
            return done[0]
        entries.append({"cause": cause, "spec": replace(spec, env={}).stored(), "change": change})
        self.path.write_text(json.dumps(data))
        log(f"ledger: {spec.service} {spec.version}")
        return len(entries)

    def observe(self, environment: str, service: str) -> ServiceState:
        entries = self._revisions(environment, service)
        spec = entries[-1]["spec"]
        return ServiceState(
            environment, service, spec["version"], desired=spec["replicas"],
            running=spec["replicas"], ready=spec["replicas"], revision=len(entries),
        )  # fmt: skip

    def history(self, environment: str, service: str) -> list[Revision]:
        return [
            Revision(i + 1, e["spec"]["version"], e["spec"]["replicas"], "-", e["cause"])
            for i, e in enumerate(self._revisions(environment, service))
        ]

    def rollback(
        self, environment: str, service: str, revision: int, *, log: LogSink,
        change: str | None = None,
    ) -> int:  # fmt: skip
        entries = self._revisions(environment, service)
        done = [i + 1 for i, e in enumerate(entries) if change and e.get("change") == change]
        if done:
            return done[0]
        wanted = len(entries) - 1 if revision == 0 else revision
        spec = DeploySpec.from_stored(entries[wanted - 1]["spec"], {})
        return self.apply(spec, cause=f"rollback to revision {wanted}", log=log, change=change)

    def scale(
        self, environment: str, service: str, replicas: int, *, log: LogSink,
        change: str | None = None,
    ) -> int:  # fmt: skip
        spec = DeploySpec.from_stored(self._revisions(environment, service)[-1]["spec"], {})
        return self.apply(replace(spec, replicas=replicas), cause="scale", log=log, change=change)

    def restart(
        self, environment: str, service: str, *, log: LogSink, change: str | None = None
    ) -> int:
        return len(self._revisions(environment, service))

    def stop(self, environment: str, service: str | None = None) -> list[str]:
        return []

    def health(self, environment: str, service: str, bounds: HealthBounds) -> Observation:
        state = self.observe(environment, service)
        return Observation(
            desired=state.desired, running=state.running, ready=state.ready, endpoint_ok=True,
            min_replicas=bounds.min_replicas, max_replicas=bounds.max_replicas,
        )  # fmt: skip


def create(context: TargetContext) -> LedgerTarget:
    """The plugin's factory, named by its entry point."""
    return LedgerTarget(context.state_dir)
